"""Sweep config: a YAML file -> one frozen ``SweepConfig``, every field checked before any work.

A sweep is models × compression settings × tasks (issue 6). Each compression entry names a
method and lists of values (sparsity, structure, bits, group size); the lists multiply out
into ``CompressionSpec`` values (``settings.py``), so a setting the spec type rejects is
reported with the key path that produced it. Errors are one line naming the file and the key path:
``configs/x.yaml: compression[2].sparsity: expected a number, got 'abc'``. What only the
model can tell (a group size that does not divide a layer's width) fails its cell at run
time instead (see ``work.py``).

Paths (``out``, ``models_dir``, ``data_dir``, local model paths) are relative to the
current directory, like every other compsafe command, and made absolute here (Ray workers
need not share the driver's working directory). ``models_dir`` caches compressed
models by spec key; with the Ray executor it must be a folder every worker sees.

    config = load_config("configs/quick.yaml", overrides=["tasks.*.limit=5"])
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from compsafe.compress.spec import Calibration, CompressionSpec
from compsafe.errors import CompsafeError
from compsafe.models.embedded import EMBEDDED
from compsafe.store import STORE_FILE
from compsafe.sweep.overrides import apply_overrides, normalize
from compsafe.sweep.settings import parse_calibration, parse_specs
from compsafe.sweep.validate import Fields, expect, options_at
from compsafe.types import (
    CHAT_TEMPLATES,
    DEFAULT_PROTOCOL,
    PROTOCOL_NAMES,
    PromptFormat,
    TaskOptions,
)

TOP_KEYS = ("name", "out", "models_dir", "data_dir", "seed", "device", "device_map", "dtype",
            "batch_size",
            "checkpoint_every", "dense", "calibration", "models", "compression", "tasks", "ray",
            "protocol")
TASK_KEYS = ("task", "name", "limit", "seed", "n_boot", "samples", "scorer", "max_new_tokens",
             "min_new_tokens", "greedy", "prompt_source", "ppl_protocol", "seqlen", "stride",
             "fewshot", "chat", "system")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory_gb")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class ConfigError(CompsafeError):
    """A sweep config that cannot be run; the message names the file and the key path."""


@dataclass(frozen=True)
class ModelEntry:
    """A base model: ``model`` as ``compsafe eval --model`` takes it; ``name`` is its folder
    under ``models_dir`` and its label in cell lists (unique within the sweep).

    ``chat`` (None: each task's own ``chat``) formats every task's prompts for this model:
    False raw, True the tokenizer's chat template, or a ``CHAT_TEMPLATES`` name such as
    ``"tulu"`` (the reference study wraps Tulu models' prompts, its ``src/utils.py:78-88``)."""

    model: str
    name: str
    chat: bool | str | None = None
    # Run the model's own Python code (an ``auto_map`` in its config); off unless the config
    # says so for this model, as ``--trust-remote-code`` for eval and compress.
    trust_remote_code: bool = False

    def prompt_format(self, prompt: PromptFormat) -> PromptFormat:
        """A task's prompt format for this model (the model's ``chat`` wins when set)."""
        if self.chat is None:
            return prompt
        if isinstance(self.chat, str):
            return replace(prompt, chat=True, template=self.chat, system=None)
        return replace(prompt, chat=self.chat, template=None,
                       system=prompt.system if self.chat else None)


@dataclass(frozen=True)
class TaskEntry:
    """A task with its options; ``name`` labels it (the same task may run with two option
    sets under two names)."""

    name: str
    task: str
    options: TaskOptions


@dataclass(frozen=True)
class Resources:
    """What one Ray task declares (``memory_gb`` None: no memory reservation)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_gb: float | None = None


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep: ``specs`` holds every compression setting after the lists were
    multiplied out (the dense baseline first when ``dense``), duplicates dropped."""

    name: str
    out: Path
    models_dir: Path
    data_dir: Path | None
    seed: int
    device: str | None
    dtype: str
    batch_size: int | None
    checkpoint_every: int
    models: tuple[ModelEntry, ...]
    specs: tuple[CompressionSpec, ...]
    tasks: tuple[TaskEntry, ...]
    compress_resources: Resources
    eval_resources: Resources
    max_retries: int
    device_map: str | tuple[tuple[str, str | int], ...] | None = None
    """How evaluations spread a model over devices (``HFModel.load(device_map=...)``): a
    strategy name, or (module, device) pairs (a tuple, so the config stays hashable)."""

    @property
    def store_path(self) -> Path:
        return self.out / STORE_FILE

    @property
    def load_device_map(self) -> str | dict | None:
        """``device_map`` as ``HFModel.load`` takes it."""
        return dict(self.device_map) if isinstance(self.device_map, tuple) else self.device_map


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SweepConfig:
    """Read, override (``KEY.PATH=VALUE``) and validate a sweep config file."""
    import yaml

    from compsafe.sweep.yaml_strict import load_strict

    path = Path(path)
    try:
        raw = load_strict(path.read_text(encoding="utf-8"), path)
    except OSError as e:
        raise ConfigError(f"cannot read sweep config {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    return parse_config(raw, path, overrides)


def parse_config(raw, path: Path, overrides=()) -> SweepConfig:
    """Validate an already-parsed YAML mapping (``path`` names it in errors)."""
    try:
        raw = apply_overrides(normalize(raw), overrides)
        return _parse(raw, path)
    except CompsafeError as e:
        raise ConfigError(f"{path}: {e}") from None


def _parse(raw, path: Path) -> SweepConfig:
    top = Fields(expect(raw, dict, "(top level)", "a mapping"), "", TOP_KEYS)
    seed = top.int("seed", 1234)
    calibration = parse_calibration(top.get("calibration", {}), "calibration", Calibration())
    models = _models(top.require_list("models"))
    specs = parse_specs(top.require_list("compression", allow_empty=True), calibration,
                   top.bool("dense", True))
    protocol = top.str("protocol", DEFAULT_PROTOCOL)
    if protocol not in PROTOCOL_NAMES:
        raise CompsafeError(f"protocol: unknown protocol {protocol!r}; known: "
                            f"{', '.join(PROTOCOL_NAMES)} (docs/protocol.md)")
    tasks = _tasks(top.require_list("tasks"), seed, protocol)
    ray = Fields(expect(top.get("ray", {}), dict, "ray", "a mapping"), "ray",
                 ("compress", "eval", "max_retries"))
    out = _abs(top.str("out", f"runs/{path.stem}"))
    dtype = top.str("dtype", "auto")
    if dtype not in DTYPES:
        raise CompsafeError(f"dtype: unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    data_dir = top.str("data_dir", None)
    device_map = top.get("device_map", None)
    if device_map is not None:
        from compsafe.models.device import parse_device_map  # imports torch: only when set

        device_map = parse_device_map(device_map)
        if isinstance(device_map, dict):
            device_map = tuple(device_map.items())
    return SweepConfig(
        name=top.str("name", path.stem), out=out,
        models_dir=_abs(top.str("models_dir", str(out / "models"))),
        data_dir=_abs(data_dir) if data_dir else None, seed=seed,
        device=top.str("device", None), dtype=dtype,
        batch_size=top.int("batch_size", None, minimum=1),
        checkpoint_every=top.int("checkpoint_every", 128, minimum=1),
        models=models, specs=specs, tasks=tasks,
        compress_resources=_resources(ray.get("compress", {}), "ray.compress"),
        eval_resources=_resources(ray.get("eval", {}), "ray.eval"),
        max_retries=ray.int("max_retries", 3, minimum=0), device_map=device_map)


def _abs(path: str) -> Path:
    # Absolute at load time: Ray workers need not share the driver's working directory.
    return Path(path).expanduser().absolute()


def _models(items: list) -> tuple[ModelEntry, ...]:
    out: list[ModelEntry] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items):
        where = f"models[{i}]"
        f = Fields(expect(item, dict, where, "a mapping or a model string"), where,
                   ("model", "name", "chat", "trust_remote_code"))
        model = f.str("model")
        chat = f.get("chat", None)
        if not (chat is None or isinstance(chat, bool) or chat in CHAT_TEMPLATES):
            raise CompsafeError(f"{where}.chat: expected true, false or a template name "
                                f"({', '.join(CHAT_TEMPLATES)}), got {chat!r}")
        name = f.str("name", default_model_name(model))
        if not _SAFE_NAME.match(name):
            raise CompsafeError(f"{where}.name: {name!r} must be letters, digits, '.', '_' "
                                "or '-' (it names a folder)")
        if name in seen:
            raise CompsafeError(f"{where}.name: {name!r} is also the name of {seen[name]}; "
                                "give one of them another name")
        local = Path(model).expanduser()
        if model.startswith((".", "/", "~")) and not local.exists():
            raise CompsafeError(f"{where}.model: model path not found: {model}")
        if model not in EMBEDDED and local.exists():  # absolute, so every worker finds it
            model = str(local.absolute())
        seen[name] = where
        out.append(ModelEntry(model, name, chat, f.bool("trust_remote_code", False)))
    return tuple(out)


def default_model_name(model: str) -> str:
    """A folder-safe label: the last path component, or a hub id with '/' as '--'."""
    if model.startswith((".", "/", "~")):
        model = Path(model).expanduser().name
    return re.sub(r"[^A-Za-z0-9._-]", "-", model.replace("/", "--")) or "model"


def _tasks(items: list, seed: int, run_protocol: str = DEFAULT_PROTOCOL) -> tuple[TaskEntry, ...]:
    from compsafe.scorers import scorer_list
    from compsafe.tasks import TASKS

    out: list[TaskEntry] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items):
        where = f"tasks[{i}]"
        f = Fields(expect(item, dict, where, "a mapping or a task name"), where, TASK_KEYS)
        task = f.str("task")
        if task not in TASKS:
            raise CompsafeError(f"{where}.task: unknown task {task!r}; known: "
                                f"{', '.join(sorted(TASKS))}")
        base_name = f.str("name", task)
        scorer = f.get("scorer", None)
        with options_at(where):  # the registry checks the names, as for --scorer
            scorers = scorer_list(scorer if scorer is None or isinstance(scorer, list)
                                  else [scorer])
        # Several scorers: one entry each, named <name>-<scorer>; their runs share one set
        # of generations (store/shared.py), as the study scores each set several ways.
        names = ([base_name] if len(scorers) == 1
                 else [f"{base_name}-{scorer}" for scorer in scorers])
        for name in names:
            if name in seen:
                raise CompsafeError(f"{where}.name: {name!r} is also the name of "
                                    f"{seen[name]}; give one of them a different 'name'")
            seen[name] = where
        # Types are read here; ranges are TaskOptions' (one place, the CLI's messages).
        with options_at(where):
            common = dict(
                limit=f.int("limit", None), seed=f.int("seed", seed),
                n_boot=f.int("n_boot", 1000), samples=f.int("samples", 1),
                max_new_tokens=f.int("max_new_tokens", None),
                min_new_tokens=f.int("min_new_tokens", None),
                prompt_source=f.str("prompt_source", None), protocol=run_protocol,
                greedy=f.bool("greedy", False), ppl_protocol=f.str("ppl_protocol", None),
                seqlen=f.int("seqlen", None), stride=f.int("stride", None),
                prompt=PromptFormat(fewshot=f.int("fewshot", 0), chat=f.bool("chat", False),
                                    system=f.str("system", None)))
            out += [TaskEntry(name, task, TaskOptions(scorer=scorer, **common))
                    for name, scorer in zip(names, scorers, strict=True)]
    return tuple(out)


def _resources(raw, where: str) -> Resources:
    f = Fields(expect(raw, dict, where, "a mapping"), where, RESOURCE_KEYS)
    memory = f.get("memory_gb", None)
    return Resources(num_cpus=float(f.number("num_cpus", 1.0, minimum=0)),
                     num_gpus=float(f.number("num_gpus", 0.0, minimum=0)),
                     memory_gb=None if memory is None else float(
                         f.number("memory_gb", None, minimum=0)))
