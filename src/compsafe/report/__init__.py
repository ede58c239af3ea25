"""Reports: read the results store only, never a model (this package never imports torch).

Statistics (``load``, ``metric_info``, ``paired``, ``stats``, ``divergent``, ``exports``,
``cli_compare``) and presentation (figures, HTML) are separate modules; import the one you
need, so that ``compsafe compare`` does not pay for matplotlib.

    from compsafe.report.paired import paired_diffs
    diffs = paired_diffs("runs/", baseline="dense", fdr=0.05)
"""
