"""The task interface: examples -> requests -> per-item records -> metric rows.

A task never touches torch. The runner asks it for examples, turns each into
log-likelihood requests, sends them to the model adapter, and hands the responses back
to ``record``; ``metrics`` is a pure function of the records, so stored records can be
re-scored without the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from compsafe.metrics.defs import Def, rows_of
from compsafe.metrics.stats import stable_seed
from compsafe.types import (
    LoglikRequest,
    LoglikResponse,
    MetricRow,
    RollingRequest,
    RollingResponse,
    TaskOptions,
)

Request = Any  # LoglikRequest | RollingRequest | models.generate.GenerationRequest
Response = Any  # LoglikResponse | RollingResponse | str
__all__ = ["LoglikRequest", "LoglikResponse", "RollingRequest", "RollingResponse"]

Render = Callable[[str], str]
T = TypeVar("T")


def limit_per_subset(subsets: Mapping[str, Sequence[T]], limit: int | None, seed: int,
                     tag: str) -> list[T]:
    """Items of every subset in order, each subset cut to ``limit`` by a seeded sample.

    The sample of a subset depends only on (seed, tag, subset name), so adding a subset or
    changing another one never changes it; kept items stay in file order.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    out: list[T] = []
    for name, items in subsets.items():
        if limit is not None and limit < len(items):
            rng = np.random.default_rng(stable_seed(seed, tag, name))
            keep = np.sort(rng.choice(len(items), size=limit, replace=False))
            items = [items[i] for i in keep]
        out.extend(items)
    return out
"""Turns a task's raw prompt into model input (identity, or a chat template)."""


class Example(Protocol):
    """Anything with a stable string ``id`` unique within the task."""

    id: str


class LoglikTask(ABC):
    """A benchmark: examples -> model requests -> per-item records -> metric rows.

    (The name is historical: requests may also be rolling log-likelihoods or generations.)

    Subclasses set ``name`` (the CLI name) and ``version`` (bump when scoring changes, so
    stored results of the old scoring are not reused).
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    # Why the task takes no demonstrations (it scores bare sentences), or None if it does:
    # such a task refuses --fewshot in one line instead of silently ignoring it.
    no_fewshot: ClassVar[str | None] = None

    def __init__(self, data_dir: Path, options: TaskOptions | None = None):
        self.data_dir = Path(data_dir)
        self.options = options or TaskOptions()
        if self.no_fewshot and self.options.prompt.fewshot:
            from compsafe.errors import CompsafeError
            raise CompsafeError(f"{self.name} {self.no_fewshot} and has no demonstrations; "
                                f"use fewshot=0 (got {self.options.prompt.fewshot})")

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything besides the model that determines the results (JSON-serialisable)."""

    @abstractmethod
    def examples(self) -> Sequence[Example]:
        """The (subsampled) examples, in a deterministic order."""

    def examples_sha256(self) -> str:
        """Content hash of exactly the examples this task evaluates, for its run key.

        Part of every run key (``runner.evaluate.task_key``), so a changed data file, or a
        data dir holding other content under the same names, never reuses stored results.
        """
        if "_examples_sha256" not in self.__dict__:  # hashing a large set takes seconds
            from compsafe.tasks.digest import examples_sha256
            self._examples_sha256 = examples_sha256(self.examples())
        return self._examples_sha256

    @abstractmethod
    def requests(self, example: Any, render: Render) -> list[Request]:
        """The requests for one example; ``render`` formats the prompt for the model.

        Any mix of ``LoglikRequest``, ``RollingRequest`` and ``GenerationRequest``; the
        runner batches each kind across a chunk and returns responses in the same order
        (``LoglikResponse``, ``RollingResponse``, and the generated ``str``).
        """

    @abstractmethod
    def record(self, example: Any, responses: list[Response]) -> dict[str, Any]:
        """The per-item record (JSON-serialisable, with ``"id"``) from the responses."""

    def postprocess(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per-chunk hook before records are stored (e.g. score a chunk's generations in one
        batch). Default: unchanged."""
        return records

    def shared_config(self) -> dict[str, Any] | None:
        """The part of ``config()`` that determines the records *before* ``postprocess``,
        when it is less than all of it: runs that differ only in the rest (a degeneration
        task's scorer) share the model's outputs through the store (``store/shared.py``)
        instead of computing them again. Default: None, nothing is shared."""
        return None

    def n_failed(self, record: dict[str, Any]) -> int:
        """How many parts of a stored record failed for a reason that may pass (a scorer or
        API error), so a rerun should retry them. Default: none can."""
        return 0

    def retry(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records with their failed parts computed again (only those parts); called by
        the runner on stored records whose ``n_failed`` is positive. Default: unchanged."""
        return records

    @abstractmethod
    def metric_defs(self, records: list[dict[str, Any]]) -> list[Def]:
        """The metric rows as definitions (``compsafe.metrics.defs``): item-aligned columns
        and statistics, which reports resample to compare two models on the same items."""

    def metrics(self, records: list[dict[str, Any]]) -> list[MetricRow]:
        """Metric rows from records (each definition's value with its bootstrap CI, seeded
        by the options); a pure function."""
        return rows_of(self.metric_defs(records), self.options.n_boot)
