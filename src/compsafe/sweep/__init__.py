"""Sweeps: models × compression settings × tasks, resumable, locally or on Ray (issue 6).

``config`` reads and validates the YAML, ``expand`` turns it into groups and cells with
deterministic keys, ``work`` holds the units (build a compressed model, evaluate a
group's cells), ``local`` and ``ray_executor`` run them, ``state`` and ``status`` keep and
show each cell's state, ``cli`` is ``compsafe sweep``.

    compsafe sweep configs/quick.yaml && compsafe sweep status configs/quick.yaml
"""
