"""Frozen value types shared by tasks, the model adapter, the runner and the store.

One request type per kind of model call (log-likelihood of a continuation given a context,
rolling log-likelihood of a text, generation of a continuation) with its response type, the
decoding parameters, prompt formats, task options and one tidy metric row. No torch here:
tasks build requests from these types alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from compsafe.errors import CompsafeError, OptionError
from compsafe.errors import check_int as _check_int


@dataclass(frozen=True)
class LoglikRequest:
    """Score ``continuation`` after ``context``: log P(continuation | context)."""

    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikResponse:
    """Sum of the continuation tokens' log-probabilities, and whether each was the argmax."""

    logprob: float
    is_greedy: bool
    n_tokens: int


@dataclass(frozen=True)
class RollingRequest:
    """Score the whole of ``text`` (perplexity): log P(text), windowed by the model's context."""

    text: str


@dataclass(frozen=True)
class RollingResponse:
    """Total log-probability of a text's tokens and how many tokens were scored."""

    logprob: float
    n_tokens: int


CHAT_TEMPLATES = {
    # The reference study's Tulu format (Xu et al. 2024, src/utils.py:78-79; BBQ and UnQover
    # use the same, src/multi_qa.py:20,36), applied there whenever the model path contains
    # "tulu". A tokenizer's own template (chat without a name) may differ in whitespace/BOS.
    "tulu": "<|user|>\n{prompt}\n<|assistant|>\n",
}
"""Named literal chat templates; ``{prompt}`` is the task's raw prompt."""


@dataclass(frozen=True)
class DecodingConfig:
    """Decoding parameters; part of every generation run key."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.9
    max_new_tokens: int = 30
    min_new_tokens: int = 0

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"min_new_tokens must be between 0 and max_new_tokens "
                             f"({self.max_new_tokens}), got {self.min_new_tokens}")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError(f"invalid sampling parameters: {self}")

    def to_dict(self) -> dict:
        d = asdict(self)
        # Run keys hash this dict: leaving out the default minimum keeps the keys of runs
        # stored before min_new_tokens existed (they had no minimum).
        if not self.min_new_tokens:
            del d["min_new_tokens"]
        return d


@dataclass(frozen=True)
class GenerationRequest:
    """A prompt and the key its sample's randomness derives from (e.g. ``prompt_id/k``).

    ``decoding`` and ``seed`` travel with the request so the runner can serve requests of
    several tasks at once; requests with equal (decoding, seed) are batched together.
    """

    prompt: str
    sample_key: str
    decoding: DecodingConfig | None = None
    seed: int = 0


@dataclass(frozen=True)
class PromptFormat:
    """How a task's raw prompt becomes model input. Part of every run key.

    ``fewshot``: number of demonstrations prepended (drawn by the task, seeded).
    ``chat``: wrap the prompt as a user turn with the tokenizer's chat template.
    ``system``: optional system message when ``chat`` is on.
    ``template``: with ``chat``, a named literal template (``CHAT_TEMPLATES``) instead of the
    tokenizer's, e.g. ``"tulu"``, the reference study's Tulu format.
    """

    fewshot: int = 0
    chat: bool = False
    system: str | None = None
    template: str | None = None

    def __post_init__(self):
        _check_int("fewshot", self.fewshot, 0, optional=False)
        if self.template is None:
            return
        if self.template not in CHAT_TEMPLATES:
            raise CompsafeError(f"unknown chat template {self.template!r}; known: "
                                f"{', '.join(CHAT_TEMPLATES)}")
        if not self.chat:
            raise CompsafeError(f"chat template {self.template!r} needs chat on")
        if self.system:
            raise CompsafeError(f"chat template {self.template!r} has no system turn; "
                                "drop the system message")

    def to_dict(self) -> dict:
        d = asdict(self)
        # Run keys hash this dict: without a template it is what it was before templates
        # existed, so earlier runs keep their keys.
        if self.template is None:
            del d["template"]
        return d

    def render(self, text: str) -> str | None:
        """``text`` in the named literal template, or None when the tokenizer's is used."""
        return None if self.template is None else CHAT_TEMPLATES[self.template].format(
            prompt=text)


PROTOCOL_NAMES = ("compsafe", "reference")
"""``compsafe``: compsafe's defaults; ``reference``: the reference study's protocol (Xu et al.
2024's released code), as far as compsafe can express it (``configs/paper.yaml``)."""
DEFAULT_PROTOCOL = "compsafe"


@dataclass(frozen=True)
class TaskOptions:
    """Options every task accepts. ``limit`` and ``seed`` select a deterministic subsample.

    The generation options (``samples``, ``scorer``, ``max_new_tokens``, ``min_new_tokens``,
    ``greedy``, ``prompt_source``) are read by generation tasks only, the perplexity options
    (``ppl_protocol``, ``seqlen``, ``stride``) by ``wikitext2``; ``None`` means the task's
    default. ``protocol`` names the protocol the options follow (``PROTOCOL_NAMES``:
    "compsafe", or "reference" for the study's, docs/protocol.md); every run records it, and
    reports never pair runs of different protocols.
    """

    limit: int | None = None
    seed: int = 1234
    prompt: PromptFormat = field(default_factory=PromptFormat)
    n_boot: int = 1000
    samples: int = 1
    scorer: str | None = None
    max_new_tokens: int | None = None
    greedy: bool = False
    ppl_protocol: str | None = None
    seqlen: int | None = None
    stride: int | None = None
    min_new_tokens: int | None = None
    prompt_source: str | None = None
    protocol: str = DEFAULT_PROTOCOL

    def __post_init__(self):
        """Every option's range, here only (the CLI and sweep configs map onto it)."""
        from compsafe.models.windows import PROTOCOLS  # torch-free, like this module

        _check_int("limit", self.limit, 1)
        _check_int("seed", self.seed, 0, optional=False)
        _check_int("n_boot", self.n_boot, 0, optional=False)
        _check_int("samples", self.samples, 1, optional=False)
        _check_int("max_new_tokens", self.max_new_tokens, 1)
        _check_int("min_new_tokens", self.min_new_tokens, 0)
        if None not in (self.min_new_tokens, self.max_new_tokens) and (
                self.min_new_tokens > self.max_new_tokens):
            raise OptionError("min_new_tokens", f"must be at most max_new_tokens "
                              f"({self.max_new_tokens}), got {self.min_new_tokens}")
        _check_int("seqlen", self.seqlen, 1)
        _check_int("stride", self.stride, 1)
        if None not in (self.seqlen, self.stride) and self.stride > self.seqlen:
            raise OptionError("stride", f"must be at most seqlen ({self.seqlen}), got "
                              f"{self.stride}")
        if self.ppl_protocol is not None and self.ppl_protocol not in PROTOCOLS:
            raise OptionError("ppl_protocol", f"unknown protocol {self.ppl_protocol!r}; "
                              f"known: {', '.join(PROTOCOLS)}")
        if self.protocol not in PROTOCOL_NAMES:
            raise OptionError("protocol", f"unknown protocol {self.protocol!r}; known: "
                              f"{', '.join(PROTOCOL_NAMES)} (docs/protocol.md)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MetricRow:
    """One tidy metric value with its sample size and 95% bootstrap confidence interval.

    ``value`` is ``None`` when the metric is undefined on these items (for example BBQ's
    s_DIS when no answer was non-unknown): undefined is reported as such, never as 0.
    """

    subset: str
    group: str
    metric: str
    value: float | None
    n: int
    ci_low: float | None = None
    ci_high: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)
