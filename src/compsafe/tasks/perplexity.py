"""Language-modeling perplexity (WikiText-2) and dialect bias in perplexity (AAVE vs SAE).

``wikitext2`` (Merity et al. 2017) under an explicit protocol (``models/windows.py``):

- ``chunks`` (default): non-overlapping ``seqlen``-token windows of the joined test text,
  tail dropped — the compression papers' number (e.g. 5.47 for Llama-2-7B at 2048). The
  reference study's ``test_perplexity.py`` runs the HF loop with ``stride = max_length =
  2048``: the same windows plus the short tail window, averaged unweighted.
- ``sliding``: Hugging Face's strided loop (``seqlen`` = its ``max_length``, ``stride``).
- ``documents``: lm-eval's rolling log-likelihood per article (62 test articles), giving
  token/word/byte perplexity and bits per byte, with windows of the model's context.

Corpus protocols are one example (the corpus) sent as ``RollingRequest(WindowedText)``:
the task never sees the tokenizer, so it cannot enumerate token windows; the record keeps
every window's loss; ``--limit`` keeps the first windows; ``seqlen`` is capped at the
model's context (the effective value is recorded).

``dialect``: per-document rolling log-likelihood (``documents``) on the AAVE/SAE parallel
pairs (Groenwold et al. 2020), TwitterAAE AA-aligned tweets (Blodgett et al. 2016), AAVE
literature, and HELM's AA/white tweets and Paloma files when present: perplexity per
corpus and dialect, AAVE/SAE and AA/white gaps (ratio, difference) with bootstrap CIs over
documents, and the paired per-pair log-likelihood difference. That is the ``documents``
protocol (default). The reference study instead joins each corpus with "\n\n" and scores
2048-token windows of the joined text (its ``src/test_perplexity.py:140-195``), so tweets
get their predecessors as context: ``ppl_protocol: sliding`` (or ``chunks``) with
``seqlen``/``stride`` (default 2048/2048, the study's windows) does the same per corpus,
the pairs' AAVE and SAE sides joined as two corpora; its gaps resample windows, not
documents, and come in the token unit only. Scoring documents separately is what allows
CIs over documents and pairing.
Empty/whitespace-only texts and non-UTF-8 lines are not sent to the model; texts of fewer
than two tokens are scored but left out of the metrics; all are counted
(``n_skipped_empty``, ``n_invalid_utf8``, ``n_skipped_short``). ``--limit`` caps documents
(pairs) per corpus, sampled by seed. Raw text is scored (no chat template).

    compsafe eval --model default --tasks wikitext2,dialect --limit 500
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from compsafe.data import corpora
from compsafe.errors import CompsafeError
from compsafe.metrics.defs import Def, record_ids
from compsafe.metrics.dialect import gap_defs, paired_defs, window_gap_defs
from compsafe.metrics.perplexity import count_bytes, count_words, document_defs, window_defs
from compsafe.metrics.stats import stable_seed
from compsafe.models.windows import PROTOCOLS, WindowedText
from compsafe.tasks.base import LoglikTask, Render
from compsafe.types import MetricRow, RollingRequest, RollingResponse, TaskOptions

PAIRS = "aave_sae_pairs"
GAPS = (("twitteraae_helm", "twitteraae_helm_aa", "twitteraae_helm_white", "aa", "white"),
        ("paloma/twitterAAE_HELM_fixed", "paloma/twitterAAE_HELM_fixed/test_AA",
         "paloma/twitterAAE_HELM_fixed/test_white", "aa", "white"))


@dataclass(frozen=True)
class Item:
    """A document (``text``) or a pair (``text`` AAVE, ``text_b`` SAE) of one corpus."""

    id: str
    corpus: str
    text: str
    text_b: str | None = None
    invalid_utf8: bool = False


def _sample(items: list, limit: int | None, seed: int, name: str) -> list:
    if limit is None or limit >= len(items):
        return items
    rng = np.random.default_rng(stable_seed(seed, "perplexity-limit", name))
    return [items[i] for i in np.sort(rng.choice(len(items), size=limit, replace=False))]


def _skip(item: Item) -> str | None:
    if item.invalid_utf8:
        return "invalid_utf8"
    if not item.text.strip() or (item.text_b is not None and not item.text_b.strip()):
        return "empty"
    return None


def _doc(text: str, resp: RollingResponse) -> dict[str, Any]:
    return {"logprob": float(resp.logprob), "n_tokens": int(resp.n_tokens),
            "n_words": count_words(text), "n_bytes": count_bytes(text)}


def _counts(records: list[dict]) -> dict[str, int]:
    skip = [r["skip"] for r in records]
    return {"n_docs": skip.count(None), "n_skipped_empty": skip.count("empty"),
            "n_skipped_short": skip.count("short"), "n_invalid_utf8": skip.count("invalid_utf8")}


def _columns(docs: list[dict], prefix: str = "") -> dict[str, list]:
    keys = ("logprob", "n_tokens", "n_words", "n_bytes")
    return {prefix + k: [d[k] for d in docs] for k in keys}


class _DocumentTask(LoglikTask):
    """Shared machinery: one rolling request per text, skips counted, CIs over documents."""

    def requests(self, example: Item, render: Render) -> list[RollingRequest]:
        if _skip(example):
            return []
        return [RollingRequest(t) for t in (example.text, example.text_b) if t is not None]

    def record(self, example: Item, responses: list[RollingResponse]) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": example.id, "corpus": example.corpus,
                               "protocol": "documents", "skip": _skip(example)}
        if rec["skip"]:  # never sent to the model
            return rec
        texts = [example.text] if example.text_b is None else [example.text, example.text_b]
        docs = [_doc(t, r) for t, r in zip(texts, responses, strict=True)]
        if min(d["n_tokens"] for d in docs) < 2:
            rec["skip"] = "short"
        if example.text_b is None:
            return {**rec, **docs[0]}
        return {**rec, "aave": docs[0], "sae": docs[1]}


class WikiText2Task(_DocumentTask):
    """WikiText-2 test perplexity under the ``chunks``, ``sliding`` or ``documents`` protocol."""

    name = "wikitext2"
    version = 1

    def __init__(self, data_dir, options: TaskOptions | None = None,
                 protocol: str | None = None, seqlen: int | None = None,
                 stride: int | None = None):
        super().__init__(data_dir, options)
        # Explicit arguments win; then the CLI's --ppl-protocol/--seqlen/--stride options.
        o = self.options
        protocol = protocol or o.ppl_protocol or "chunks"
        seqlen = seqlen or o.seqlen or 2048
        stride = stride or o.stride or 512
        if protocol not in PROTOCOLS:
            raise CompsafeError(f"unknown perplexity protocol {protocol!r}; "
                                f"known: {', '.join(PROTOCOLS)}")
        if protocol == "sliding" and not 1 <= stride <= seqlen:
            raise CompsafeError(f"--stride must be in [1, --seqlen], got {stride} and {seqlen}")
        self.protocol, self.seqlen, self.stride = protocol, seqlen, stride

    @cached_property
    def text(self) -> str:
        return corpora.wikitext2_text(self.data_dir)

    def config(self) -> dict[str, Any]:
        o = self.options
        return {"task": self.name, "version": self.version, "protocol": self.protocol,
                "seqlen": self.seqlen if self.protocol != "documents" else "model max_length",
                "stride": self.stride if self.protocol == "sliding" else None,
                "limit": o.limit, "limit_scope": "windows" if self.protocol != "documents"
                else "articles", "seed": o.seed, "n_boot": o.n_boot,
                "data_sha256": hashlib.sha256(self.text.encode()).hexdigest()}

    def examples(self) -> list[Item]:
        if self.protocol != "documents":
            return [Item("wikitext2/test", "wikitext2", self.text)]
        docs = [Item(f"wikitext2/{i:03d}", "wikitext2", t)
                for i, t in enumerate(corpora.wikitext2_articles(self.text))]
        return _sample(docs, self.options.limit, self.options.seed, "wikitext2")

    def requests(self, example: Item, render: Render) -> list[RollingRequest]:
        if self.protocol == "documents":
            return super().requests(example, render)
        return [RollingRequest(WindowedText(example.text, self.protocol, self.seqlen,
                                            self.stride, self.options.limit))]

    def record(self, example: Item, responses: list[RollingResponse]) -> dict[str, Any]:
        if self.protocol == "documents":
            return super().record(example, responses)
        return window_record(example.id, responses, self.protocol)

    def metric_defs(self, records: list[dict[str, Any]]) -> list[Def]:
        return wikitext2_defs(records, self.protocol, self.options.seed)


class DialectTask(_DocumentTask):
    """Perplexity per dialect corpus and the gaps between dialects (see module docstring)."""

    name = "dialect"
    version = 1

    def __init__(self, data_dir, options: TaskOptions | None = None,
                 corpora_names: tuple[str, ...] | None = None, unit: str = "paragraph"):
        super().__init__(data_dir, options)
        self.unit = unit
        self.names = tuple(corpora_names) if corpora_names else (
            PAIRS, *corpora.corpus_names(self.data_dir))
        o = self.options
        self.protocol = o.ppl_protocol or "documents"
        # The study's windows: its HF loop with stride = max_length = 2048.
        self.seqlen = o.seqlen or 2048
        self.stride = o.stride or self.seqlen
        if self.protocol not in PROTOCOLS:
            raise CompsafeError(f"dialect: unknown perplexity protocol {self.protocol!r}; "
                                f"known: {', '.join(PROTOCOLS)}")
        if self.protocol == "sliding" and not 1 <= self.stride <= self.seqlen:
            raise CompsafeError(f"dialect: stride must be in [1, seqlen], got {self.stride} "
                                f"and {self.seqlen}")

    @property
    def windowed(self) -> bool:
        """Corpora joined and scored in windows (the study's protocol), not by document."""
        return self.protocol != "documents"

    @cached_property
    def items(self) -> dict[str, list[Item]]:
        out = {}
        for name in self.names:
            if name == PAIRS:
                out[name] = [Item(p.id, PAIRS, p.aave, p.sae)
                             for p in corpora.load_pairs(self.data_dir)]
            else:
                out[name] = [Item(d.id, name, d.text, None, d.invalid_utf8)
                             for d in corpora.load_corpus(self.data_dir, name, self.unit)]
        return out

    def config(self) -> dict[str, Any]:
        o = self.options
        totals = {n: {"n": len(v), "n_invalid_utf8": sum(i.invalid_utf8 for i in v),
                      "n_empty": sum(_skip(i) == "empty" for i in v)}
                  for n, v in self.items.items()}
        cfg = {"task": self.name, "version": self.version, "corpora": list(self.names),
               "literature_unit": self.unit, "corpus_totals": totals,
               "protocol": "documents (lm-eval loglikelihood_rolling, model max_length)",
               "limit": o.limit, "limit_scope": "per corpus", "seed": o.seed,
               "n_boot": o.n_boot}
        if self.windowed:  # absent for documents, so their run keys stay as they were
            cfg.update(protocol=f"{self.protocol} over each corpus joined with '\\n\\n'",
                       ppl_protocol=self.protocol, seqlen=self.seqlen,
                       stride=self.stride if self.protocol == "sliding" else None,
                       limit_scope="windows per corpus")
        return cfg

    def examples(self) -> list[Item]:
        if self.windowed:
            return self._joined()
        return [it for name, items in self.items.items()
                for it in _sample(items, self.options.limit, self.options.seed, name)]

    def _joined(self) -> list[Item]:
        """One item per corpus (per side of the pairs): its texts joined with "\n\n", as
        the study's ``configure_perplexity_dataset``; empty and non-UTF-8 texts left out."""
        out = []
        for name, items in self.items.items():
            kept = [it for it in items if not _skip(it)]
            sides = ((f"{PAIRS}/aave", [it.text for it in kept]),
                     (f"{PAIRS}/sae", [it.text_b for it in kept])) if name == PAIRS else (
                (name, [it.text for it in kept]),)
            out += [Item(f"{corpus}:joined", corpus, "\n\n".join(texts))
                    for corpus, texts in sides]
        return out

    def requests(self, example: Item, render: Render) -> list[RollingRequest]:
        if not self.windowed:
            return super().requests(example, render)
        return [RollingRequest(WindowedText(example.text, self.protocol, self.seqlen,
                                            self.stride, self.options.limit))]

    def record(self, example: Item, responses: list[RollingResponse]) -> dict[str, Any]:
        if not self.windowed:
            return super().record(example, responses)
        return window_record(example.id, responses, self.protocol, corpus=example.corpus)

    def metric_defs(self, records: list[dict[str, Any]]) -> list[Def]:
        return dialect_defs(records, self.names, self.options.seed, self.protocol)


def window_record(item_id: str, responses: list, protocol: str, **fields) -> dict[str, Any]:
    """The record of one text scored by a corpus protocol (its one ``CorpusResponse``):
    the total and, per window, the loss and weight that the metrics resample."""
    (resp,) = responses
    if getattr(resp, "protocol", None) != protocol:
        raise TypeError(f"the model answered a {protocol} request with "
                        f"{type(resp).__name__}; it does not serve corpus protocols")
    return {"id": item_id, **fields, "protocol": resp.protocol, "seqlen": resp.seqlen,
            "stride": resp.stride, "logprob": resp.logprob, "n_tokens": resp.n_tokens,
            "window_nll": list(resp.window_nll), "window_weight": list(resp.window_weight)}


def _ids(recs: list[dict]):
    return record_ids(recs)


def corpus_defs(name: str, recs: list[dict], seed: int) -> list[Def]:
    """Perplexity definitions over a corpus' scored documents, then its skip counts."""
    kept = [r for r in recs if r["skip"] is None]
    defs: list[Def] = document_defs(name, _columns(kept), seed, _ids(kept))
    return defs + [MetricRow(name, "all", k, float(v), len(recs))
                   for k, v in _counts(recs).items()]


def wikitext2_defs(records: list[dict[str, Any]], protocol: str, seed: int) -> list[Def]:
    """Definitions of ``WikiText2Task.metrics``' rows. Corpus protocols resample windows,
    identified as ``<record id>#<window index>``: the same windows for every model of the
    same tokenizer, protocol, seqlen and limit, so compressed and dense pair window by window.
    """
    subset = f"wikitext2/{protocol}"  # the protocol shows wherever the number goes
    if protocol == "documents":
        return corpus_defs(subset, records, seed)
    defs: list[Def] = []
    for r in records:
        ids = [f"{r['id']}#{i}" for i in range(len(r["window_nll"]))]
        defs += window_defs(subset, r["window_nll"], r["window_weight"], seed, ids)
        defs.append(MetricRow(subset, "all", "n_tokens", float(r["n_tokens"]), 1))
    return defs


def dialect_defs(records: list[dict[str, Any]], names, seed: int,
                 protocol: str = "documents") -> list[Def]:
    """Definitions of ``DialectTask.metrics``' rows: per corpus, per side of the parallel
    pairs, the paired gaps (one stratum of pairs) and the independent gaps (two strata)."""
    if protocol != "documents":
        return dialect_window_defs(records, protocol, seed)
    defs: list[Def] = []
    by = {n: [r for r in records if r["corpus"] == n] for n in names}
    for name, recs in by.items():
        if name != PAIRS:
            defs += corpus_defs(name, recs, seed)
            continue
        kept = [r for r in recs if r["skip"] is None]
        for side in ("aave", "sae"):
            defs += document_defs(f"{PAIRS}/{side}", _columns([r[side] for r in kept]), seed,
                                  _ids(kept))
        cols = {**_columns([r["aave"] for r in kept], "aave_"),
                **_columns([r["sae"] for r in kept], "sae_")}
        defs += paired_defs(PAIRS, "aave", "sae", cols, seed, _ids(kept))
        defs += [MetricRow(PAIRS, "all", k, float(v), len(recs))
                 for k, v in _counts(recs).items()]
    for subset, a, b, la, lb in GAPS:
        if a in by and b in by:
            ka, kb = ([r for r in by[n] if r["skip"] is None] for n in (a, b))
            defs += gap_defs(subset, la, lb, _columns(ka), _columns(kb), seed, _ids(ka),
                             _ids(kb))
    return defs


def dialect_window_defs(records: list[dict[str, Any]], protocol: str, seed: int) -> list[Def]:
    """Window protocols: each corpus' perplexity over its windows (subset
    ``<corpus>/<protocol>``, as ``wikitext2/<protocol>``), then the gaps between the pairs'
    AAVE and SAE sides and between HELM's AA and white tweets, windows resampled."""
    defs: list[Def] = []
    by = {r["corpus"]: r for r in records}
    ids = {c: [f"{r['id']}#{i}" for i in range(len(r["window_nll"]))] for c, r in by.items()}
    for corpus, r in by.items():
        defs += window_defs(f"{corpus}/{protocol}", r["window_nll"], r["window_weight"], seed,
                            ids[corpus])
        defs.append(MetricRow(f"{corpus}/{protocol}", "all", "n_tokens", float(r["n_tokens"]),
                              1))
    gaps = [(PAIRS, f"{PAIRS}/aave", f"{PAIRS}/sae", "aave", "sae"), *GAPS]
    for subset, a, b, la, lb in gaps:
        if a in by and b in by:
            defs += window_gap_defs(f"{subset}/{protocol}", la, lb,
                                    (by[a]["window_nll"], by[a]["window_weight"]),
                                    (by[b]["window_nll"], by[b]["window_weight"]),
                                    seed, ids[a], ids[b])
    return defs
