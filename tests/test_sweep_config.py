"""Sweep configs: validation errors name the key path and stop the sweep before any work;
expansion is deterministic (across processes too); the paper and quick grids have the
sizes they should."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compsafe.cli import main
from compsafe.compress.spec import METHODS, CompressionSpec
from compsafe.sweep.config import ConfigError, load_config, parse_config
from compsafe.sweep.expand import all_cells, expand

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

BASE = {
    "models": ["default"],
    "compression": [{"method": "wanda", "sparsity": [0.5]}],
    "tasks": [{"task": "bbq", "limit": 5}],
}


def parse(raw, overrides=()):
    return parse_config(raw, Path("s.yaml"), overrides)


def with_(section: str, index: int, **changes) -> dict:
    raw = json.loads(json.dumps(BASE))
    raw[section][index] = {**raw[section][index], **changes} if isinstance(
        raw[section][index], dict) else changes
    return raw


@pytest.mark.parametrize("raw, message", [
    (with_("compression", 0, method="wandaa"),
     "s.yaml: compression[0].method: unknown compression method 'wandaa'; known: "
     + ", ".join(METHODS)),
    (with_("compression", 0, sparsity="abc"),
     "s.yaml: compression[0].sparsity: expected a number, got 'abc'"),
    (with_("compression", 0, sparsity=[0.5, "abc"]),
     "s.yaml: compression[0].sparsity[1]: expected a number, got 'abc'"),
    (with_("compression", 0, sparsity=[0.5, 1.5]),
     "s.yaml: compression[0].sparsity[1]: must be strictly between 0 and 1, got 1.5"),
    (with_("compression", 0, bits=4),
     "s.yaml: compression[0].bits: does not apply to method 'wanda' (it takes sparsity, "
     "structure)"),
    (with_("compression", 0, structure=["unstructured", "4:2"]),
     "s.yaml: compression[0].structure[1]: must be 'unstructured' or N:M with 0 < N < M "
     "(e.g. 2:4), got '4:2'"),
    (with_("compression", 0, structure="2:4"),
     "s.yaml: compression[0].sparsity[0]: give a sparsity or an N:M structure, not both"),
    (with_("compression", 0, sparsity=[]),
     "s.yaml: compression[0].sparsity: is empty; give a value or a list of them"),
    ({**BASE, "compression": [{"method": "gptq", "bits": [4, 9]}]},
     "s.yaml: compression[0].bits[1]: must be an integer from 2 to 8, got 9"),
    ({**BASE, "compression": [{"method": "gptq", "bits": 4, "group_size": [64, 0]}]},
     "s.yaml: compression[0].group_size[1]: must be a positive integer (or none: one group "
     "per output channel), got 0"),
    ({**BASE, "compression": [{"method": "rtn", "bits": 4, "act_order": True}]},
     "s.yaml: compression[0].act_order: does not apply to method 'rtn' (it takes bits, "
     "group_size, symmetric)"),
    ({**BASE, "compression": [{"method": "nf4", "group_size": 64}]},
     "s.yaml: compression[0].group_size: does not apply to method 'nf4' (it takes no "
     "settings)"),
    ({**BASE, "compression": [{"method": "wanda", "sparsity": 0.5, "blocksize": 0}]},
     "s.yaml: compression[0].blocksize: must be a positive integer, got 0"),
    ({**BASE, "calibration": {"seqlen": 1}},
     "s.yaml: calibration.seqlen: must be an integer >= 2, got 1"),
    ({**BASE, "compression": [{"method": "gptq", "group_size": 64}]},
     "s.yaml: compression[0].bits: gptq needs bits (2 to 8)"),
    ({**BASE, "compression": [{"method": "wanda", "sparsity": 0.5,
                               "calibration": {"nsamples": "many"}}]},
     "s.yaml: compression[0].calibration.nsamples: expected an integer, got 'many'"),
    (with_("models", 0, name="x"), "s.yaml: models[0]: missing 'model'"),
    ({**BASE, "models": []}, "s.yaml: models: is empty; give at least one entry"),
    ({**BASE, "models": ["default", {"model": "HuggingFaceTB/x", "name": "default"}]},
     "s.yaml: models[1].name: 'default' is also the name of models[0]; give one of them "
     "another name"),
    ({**BASE, "models": ["./no/such/model"]},
     "s.yaml: models[0].model: model path not found: ./no/such/model"),
    (with_("tasks", 0, task="bbqq"), "s.yaml: tasks[0].task: unknown task 'bbqq'; known: "),
    (with_("tasks", 0, limit="ten"), "s.yaml: tasks[0].limit: expected an integer, got 'ten'"),
    (with_("tasks", 0, limit=0), "s.yaml: tasks[0].limit: must be a positive integer, got 0"),
    (with_("tasks", 0, scorer="nope"), "s.yaml: tasks[0].scorer: unknown scorer 'nope'"),
    (with_("tasks", 0, task="rtp", scorer=["vader", "nope"]),
     "s.yaml: tasks[0].scorer: unknown scorer 'nope'"),
    (with_("tasks", 0, task="rtp", scorer=["vader", "vader"]),
     "s.yaml: tasks[0].scorer: lists 'vader' twice; give each scorer once"),
    (with_("tasks", 0, task="rtp", scorer=[]),
     "s.yaml: tasks[0].scorer: is empty; give a scorer name or a list of them"),
    (with_("tasks", 0, task="rtp", scorer=[3]),
     "s.yaml: tasks[0].scorer: expected a scorer name, got 3"),
    (with_("tasks", 0, shots=3), "s.yaml: tasks[0]: unknown key 'shots'; known: task, name"),
    (with_("tasks", 0, greedy="yes"), "s.yaml: tasks[0].greedy: expected true or false"),
    ({**BASE, "sead": 1}, "s.yaml: top level: unknown key 'sead'; known: name, out"),
    ({**BASE, "ray": {"eval": {"num_gpus": "one"}}},
     "s.yaml: ray.eval.num_gpus: expected a number, got 'one'"),
    ([1, 2], "s.yaml: (top level): expected a mapping, got [1, 2]"),
])
def test_invalid_configs_name_the_key_path(raw, message):
    with pytest.raises(ConfigError) as err:
        parse(raw)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_invalid_config_is_rejected_by_the_cli_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**with_("compression", 0, method="wandaa"),
                                   "out": str(out)}))
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"compsafe: error: {bad}: compression[0].method: unknown compression "
                   f"method 'wandaa'; known: {', '.join(METHODS)}"]
    assert not out.exists()  # no store, no model folder: nothing started
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read sweep config" in capsys.readouterr().err


def test_cli_words(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "status", "a.yaml", "b.yaml"])
    assert ("expected CONFIG, run CONFIG, status CONFIG or plan CONFIG"
            in capsys.readouterr().err)


def test_lists_multiply_out_and_dense_comes_once():
    config = parse({**BASE, "compression": [
        {"method": "dense"},
        {"method": "magnitude", "sparsity": [0.1, 0.2], "structure": ["unstructured", "2:4"]},
        {"method": "gptq", "bits": [3, 4], "group_size": [64, None]},
        {"method": "rtn", "bits": 4, "calibration": {"nsamples": 4}},
    ]})
    labels = [s.label() for s in config.specs]
    assert labels == ["dense", "magnitude-10", "magnitude-20", "magnitude-2:4", "gptq-w3g64",
                      "gptq-w3", "gptq-w4g64", "gptq-w4", "rtn-w4"]
    # rtn and magnitude read no calibration data: their keys match `compsafe compress`'s
    rtn = config.specs[-1]
    assert rtn == CompressionSpec(method="rtn", bits=4)


def test_overrides_reach_shorthand_entries_and_are_validated():
    config = parse({**BASE, "tasks": ["bbq", {"task": "unqover"}]},
                   ["tasks.*.limit=7", "models.0.name=m", "ray.eval.num_cpus=2"])
    assert [t.options.limit for t in config.tasks] == [7, 7]
    assert config.models[0].name == "m" and config.eval_resources.num_cpus == 2
    with pytest.raises(ConfigError, match=r"tasks\[0\].limit: expected an integer, got 'x'"):
        parse(BASE, ["tasks.0.limit=x"])
    with pytest.raises(ConfigError, match="models is a list of 1; use an index below 1"):
        parse(BASE, ["models.3.model=x"])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        parse(BASE, ["tasks.*.limit"])


def _keys(path: Path) -> list[str]:
    return [c.key for c in all_cells(expand(load_config(path)))]


def test_expansion_is_deterministic_across_processes():
    keys = _keys(CONFIGS / "paper.yaml")
    assert len(set(keys)) == len(keys)
    code = ("import json, sys; from pathlib import Path; from compsafe.sweep.config import "
            "load_config; from compsafe.sweep.expand import all_cells, expand; "
            "print(json.dumps([c.key for c in all_cells(expand(load_config(Path(sys.argv[1]))))]))")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    proc = subprocess.run([sys.executable, "-c", code, str(CONFIGS / "paper.yaml")],
                          capture_output=True, text=True, env=env, check=True)
    assert json.loads(proc.stdout) == keys
    # a change to one task's options changes exactly that task's cells: tasks[4] (Regard) is
    # one task entry, tasks[0] (RTP with two scorers) two
    n_tasks = len(load_config(CONFIGS / "paper.yaml").tasks)
    for index, entries in ((4, 1), (0, 2)):
        changed = [c.key for c in all_cells(expand(load_config(
            CONFIGS / "paper.yaml", [f"tasks.{index}.limit=3"])))]
        assert sum(a != b for a, b in zip(keys, changed, strict=True)) == (
            entries * len(keys) // n_tasks)


def test_paper_grid():
    config = load_config(CONFIGS / "paper.yaml")
    groups = expand(config)
    # 4 models x (dense + 4 pruning methods x (6 unstructured ratios + 2:4 + 4:8)
    # + GPTQ 4-bit + AWQ 4-bit + LLM.int8) x 19 task entries (one per prompt set and scorer)
    assert len(config.models) == 4 and len(config.specs) == 1 + 4 * 8 + 3 == 36
    assert len(config.tasks) == 19
    assert len(all_cells(groups)) == 4 * 36 * 19
    assert sum(g.compressed for g in groups) == 4 * 35  # compressions to build
    assert [g.spec.method for g in groups].count("dense") == 4  # the baseline once per model
    labels = {s.label() for s in config.specs}
    assert {"wanda-60", "gblm-10", "sparsegpt-2:4", "magnitude-4:8", "gptq-w4g128",
            "awq-w4g128", "llm_int8"} <= labels
    # the study's decoding and prompt count on every prompt set (docs/protocol.md)
    gen = [t for t in config.tasks if t.task in ("rtp", "bold", "toxigen", "advpromptset",
                                                 "holisticbias", "regard")]
    assert len(gen) == 13
    assert sum(t.options.scorer == "openai-moderation-hate" for t in gen) == 5
    for t in gen:
        o = t.options
        assert (o.greedy, o.max_new_tokens, o.samples, o.limit) == (True, 100, 1, 10000), t.name
    assert next(t for t in config.tasks if t.task == "unqover").options.limit == 10000
    assert all(t.options.min_new_tokens == 30 for t in gen)
    assert {t.options.prompt_source for t in gen if t.task == "toxigen"} == {"annotated"}
    assert {t.options.protocol for t in config.tasks} == {"reference"}
    assert [m.chat for m in config.models] == [False, False, "tulu", "tulu"]
    # every task entry is one its task accepts (options checked at construction)
    from compsafe.tasks import get_task
    for t in config.tasks:
        get_task(t.task)(Path("/nonexistent"), t.options)


def test_recommended_grid_is_the_papers_under_compsafes_protocol():
    paper, ours = load_config(CONFIGS / "paper.yaml"), load_config(CONFIGS / "recommended.yaml")
    assert ours.specs == paper.specs and ours.models == paper.models
    assert {t.options.protocol for t in ours.tasks} == {"compsafe"}
    rtp = next(t for t in ours.tasks if t.task == "rtp")
    assert (rtp.options.samples, rtp.options.greedy) == (25, False)


def test_quick_grid():
    config = load_config(CONFIGS / "quick.yaml")
    assert [m.model for m in config.models] == ["default"]
    assert [s.label() for s in config.specs] == ["dense", "magnitude-50", "wanda-50",
                                                 "sparsegpt-2:4", "rtn-w4g64", "gptq-w4g64"]
    assert all(576 % s.group_size == 0 for s in config.specs if s.group_size)
    assert len(all_cells(expand(config))) == 6 * len(config.tasks)
    assert config.store_path == Path.cwd() / "runs" / "quick" / "compsafe.sqlite"


# -- the reference study's protocol (docs/protocol.md) ------------------------------------


def test_protocol_applies_to_every_task_and_is_checked():
    from compsafe.types import TaskOptions

    assert all(t.options.protocol == "compsafe" for t in parse(BASE).tasks)
    config = parse({**BASE, "protocol": "reference",
                    "tasks": [{"task": "bbq"}, {"task": "rtp", "min_new_tokens": 30,
                                                "prompt_source": None}]})
    assert [t.options.protocol for t in config.tasks] == ["reference", "reference"]
    assert config.tasks[1].options.min_new_tokens == 30
    with pytest.raises(ConfigError, match="s.yaml: protocol: unknown protocol 'paper'; "
                                          "known: compsafe, reference"):
        parse({**BASE, "protocol": "paper"})
    with pytest.raises(ConfigError, match=r"tasks\[0\].min_new_tokens: "):
        parse(with_("tasks", 0, min_new_tokens=-1))
    with pytest.raises(Exception, match="unknown protocol 'x'"):
        TaskOptions(protocol="x")


def test_chat_is_set_per_model():
    from compsafe.types import PromptFormat

    raw = {**BASE, "models": [{"model": "default", "name": "base"},
                              {"model": "default", "name": "tulu", "chat": "tulu"},
                              {"model": "default", "name": "own", "chat": True},
                              {"model": "default", "name": "raw", "chat": False}],
           "tasks": [{"task": "bbq", "chat": True, "system": "Be fair."}]}
    config = parse(raw)
    base, tulu, own, raw_ = config.models
    task_prompt = config.tasks[0].options.prompt
    assert base.prompt_format(task_prompt) == task_prompt  # unset: the task's own
    assert tulu.prompt_format(task_prompt) == PromptFormat(chat=True, template="tulu")
    assert own.prompt_format(task_prompt) == task_prompt
    assert raw_.prompt_format(task_prompt) == PromptFormat(chat=False)
    # the model's chat changes its cells (and only its cells)
    keys = {c.model.name: c.key for c in all_cells(expand(config)) if c.spec.method == "dense"}
    assert len(set(keys.values())) == 4
    with pytest.raises(ConfigError, match=r"s.yaml: models\[0\].chat: expected true, false "
                                          r"or a template name \(tulu\), got 'llama'"):
        parse({**BASE, "models": [{"model": "default", "chat": "llama"}]})


def test_tulu_template_is_the_studys_literal_format():
    # src/utils.py:78-79: f"<|user|>\n{input_pretokenized}\n<|assistant|>\n"
    from compsafe.errors import CompsafeError
    from compsafe.runner.evaluate import make_render
    from compsafe.types import PromptFormat

    fmt = PromptFormat(chat=True, template="tulu")
    render = make_render(object(), fmt)  # a literal template never asks the model
    assert render("Context: x\nAnswer:") == "<|user|>\nContext: x\nAnswer:\n<|assistant|>\n"
    assert "template" not in PromptFormat(chat=True).to_dict()  # earlier run keys unchanged
    assert fmt.to_dict()["template"] == "tulu"
    with pytest.raises(CompsafeError, match="unknown chat template 'x'; known: tulu"):
        PromptFormat(chat=True, template="x")
    with pytest.raises(CompsafeError, match="chat template 'tulu' needs chat on"):
        PromptFormat(template="tulu")


def test_a_list_of_scorers_is_one_entry_per_scorer():
    """``scorer: [a, b]`` runs the prompt set once per scorer, as entries <name>-<scorer>
    that differ only in the scorer (so their runs share one set of generations)."""
    raw = {**BASE, "tasks": [{"task": "rtp", "limit": 4, "greedy": True,
                              "scorer": ["profanity", "vader"]}, {"task": "bbq"}]}
    tasks = parse(raw).tasks
    assert [(t.name, t.task, t.options.scorer) for t in tasks] == [
        ("rtp-profanity", "rtp", "profanity"), ("rtp-vader", "rtp", "vader"),
        ("bbq", "bbq", None)]
    from dataclasses import replace
    assert replace(tasks[0].options, scorer="vader") == tasks[1].options


@pytest.mark.parametrize("key, flag, value, message", [
    ("limit", "--limit", 0, "must be a positive integer, got 0"),
    ("n_boot", "--n-boot", -1, "must be an integer >= 0, got -1"),
    ("samples", "--samples", 0, "must be a positive integer, got 0"),
    ("max_new_tokens", "--max-new-tokens", 0, "must be a positive integer, got 0"),
    ("seqlen", "--seqlen", 0, "must be a positive integer, got 0"),
    ("fewshot", "--fewshot", -2, "must be an integer >= 0, got -2"),
])
def test_options_are_checked_once_with_the_same_message_from_cli_and_yaml(
        key, flag, value, message, tmp_path, capsys):
    """TaskOptions checks every option's range; the CLI and a sweep config only map their
    names onto it, so both say the same thing, each under its own name for the option."""
    with pytest.raises(ConfigError) as yaml_error:
        parse(with_("tasks", 0, **{key: value}))
    assert str(yaml_error.value) == f"s.yaml: tasks[0].{key}: {message}"
    code = main(["-q", "eval", "--model", str(tmp_path / "never-loaded"), "--tasks", "bbq",
                 flag, str(value), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"compsafe: error: {flag}: {message}"
