"""Hugging Face sequence classifiers as scorers: ToxiGen-RoBERTa and Regard v3.

ToxiGen-RoBERTa (``tomh/toxigen_roberta``; Hartvigsen et al., "ToxiGen: A Large-Scale
Machine-Generated Dataset for Adversarial and Implicit Hate Speech Detection", ACL 2022)
is RoBERTa-large fine-tuned on ToxiGen; the reference study scores generations with it.
Value: P(toxic), the softmax probability of ``LABEL_1``.

Regard v3 (``sasha/regardv3``, the checkpoint behind the ``evaluate`` regard measurement;
Sheng et al., "The Woman Worked as a Babysitter: On Biases in Language Generation", EMNLP
2019) classifies the regard a text shows towards its subject. Value: P(negative); extra
holds the probabilities of negative, neutral, positive and other.

Both load like any HF sequence classifier (hub id or local directory), so a compressed or
mirrored copy works too. Texts are length-sorted into batches and truncated at 512 tokens.

    scorer = get_scorer("toxigen-roberta", model="/models/toxigen_roberta", batch_size=16)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch

from compsafe.errors import ModelLoadError
from compsafe.models.device import pick_device
from compsafe.scorers.base import Scorer, ScoreResult, check_texts

# Bump when the value computed from the logits changes, so cached scores are not reused.
_SCORING_VERSION = 1


def _weights_hash(model: torch.nn.Module, tokenizer) -> str:
    """Content hash of weights, label map and vocabulary, for a model with no hub commit."""
    h = hashlib.sha256(repr(sorted(model.config.id2label.items())).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    return h.hexdigest()[:16]


def _hub_commit(hub_id: str, revision: str | None, local_files_only: bool) -> str | None:
    """The commit a hub model was loaded from (its HF-cache snapshot folder), if known."""
    try:
        from transformers.utils.hub import cached_file, extract_commit_hash

        path = cached_file(hub_id, "config.json", revision=revision,
                           local_files_only=local_files_only)
        return extract_commit_hash(path, None)
    except Exception:  # no commit to be had: the caller falls back to hashing the weights
        return None


class HFClassifier(Scorer):
    """A sequence classifier; value = softmax probability of ``value_label``.

    ``label_names`` renames the checkpoint's ``id2label`` entries (``LABEL_1`` -> ``toxic``)
    for ``label`` and ``extra``; label lookup ignores case. ``version`` is
    ``<model>@<hub commit>`` when the model came from the hub (or its cache), else
    ``<dir name>@sha256-<hash of weights, labels and vocabulary>``.
    """

    def __init__(self, model: str, value_label: str, name: str = "hf-classifier",
                 label_names: dict[str, str] | None = None, batch_size: int = 32,
                 max_length: int = 512, device: str | None = None,
                 revision: str | None = None, local_files_only: bool = False):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name = name
        self.batch_size = batch_size
        self.device = pick_device(device)
        local = Path(model).expanduser()
        if model.startswith((".", "/", "~")) and not (local / "config.json").is_file():
            raise ModelLoadError(f"classifier directory not found (no config.json): {local}")
        source = str(local) if local.is_dir() else model
        try:
            # Classifiers are pinned, plain architectures: their own code is never run.
            self.tokenizer = AutoTokenizer.from_pretrained(
                source, revision=revision, local_files_only=local_files_only,
                trust_remote_code=False)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                source, revision=revision, local_files_only=local_files_only,
                dtype=torch.float32, trust_remote_code=False)
        except Exception as e:  # transformers raises many types; all mean "cannot load"
            raise ModelLoadError(
                f"cannot load classifier {model!r} for scorer {name} (a hub id needs network "
                f"or a populated HF cache; or pass a local directory): {e}") from e
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token is None:
            # GPT-style classifiers have no pad token; padding with EOS is the usual fix and
            # the model finds the last real token through pad_token_id.
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_length = min(int(max_length), int(self.tokenizer.model_max_length))

        renames = {k.lower(): v for k, v in (label_names or {}).items()}
        id2label = self.model.config.id2label
        self.labels = [renames.get(str(id2label[i]).lower(), str(id2label[i]))
                       for i in range(len(id2label))]
        lowered = [lab.lower() for lab in self.labels]
        target = renames.get(value_label.lower(), value_label).lower()
        if target not in lowered:
            raise ModelLoadError(f"classifier {model!r} has labels {self.labels}; "
                                 f"scorer {name} needs {value_label!r}")
        self.value_index = lowered.index(target)

        commit = None if local.is_dir() else _hub_commit(model, revision, local_files_only)
        ident = f"{model}@{commit}" if commit else f"{local.name or model}@sha256-" + \
            _weights_hash(self.model, self.tokenizer)
        self.version = f"{ident};v{_SCORING_VERSION}"

    def score(self, texts: Sequence[str]) -> list[ScoreResult]:
        # Length-sorted batches waste less compute on padding; results go back in order.
        texts = check_texts(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results = super().score([texts[i] for i in order])
        out: list[ScoreResult | None] = [None] * len(texts)
        for pos, i in enumerate(order):
            out[i] = results[pos]
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def score_batch(self, texts: list[str]) -> list[ScoreResult]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        probs = self.model(**enc).logits.float().softmax(dim=-1).cpu().tolist()
        out = []
        for p in probs:
            top = max(range(len(p)), key=p.__getitem__)
            out.append(ScoreResult.ok(p[self.value_index], self.labels[top],
                                      dict(zip(self.labels, p, strict=True))))
        return out


class ToxiGenRoberta(HFClassifier):
    """ToxiGen-RoBERTa: value = P(toxic) (``LABEL_1``); extra = {benign, toxic}."""

    def __init__(self, model: str = "tomh/toxigen_roberta", batch_size: int = 32,
                 max_length: int = 512, device: str | None = None,
                 revision: str | None = None, local_files_only: bool = False):
        super().__init__(model, "LABEL_1", name="toxigen-roberta",
                         label_names={"LABEL_0": "benign", "LABEL_1": "toxic"},
                         batch_size=batch_size, max_length=max_length, device=device,
                         revision=revision, local_files_only=local_files_only)


class RegardV3(HFClassifier):
    """Regard v3: value = P(negative); extra = {negative, neutral, positive, other}."""

    LABELS = ("negative", "neutral", "positive", "other")

    def __init__(self, model: str = "sasha/regardv3", batch_size: int = 32,
                 max_length: int = 512, device: str | None = None,
                 revision: str | None = None, local_files_only: bool = False):
        super().__init__(model, "negative", name="regard", batch_size=batch_size,
                         max_length=max_length, device=device, revision=revision,
                         local_files_only=local_files_only)
        if sorted(lab.lower() for lab in self.labels) != sorted(self.LABELS):
            raise ModelLoadError(f"regard classifier {model!r} has labels {self.labels}, "
                                 f"expected {', '.join(self.LABELS)}")
        self.labels = [lab.lower() for lab in self.labels]
