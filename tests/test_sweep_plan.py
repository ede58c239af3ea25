"""``compsafe sweep plan``: work counted exactly (by hand on a toy task, and against the
forward passes a real run makes), prices that add up, done cells and cached models left
out, and the command end to end on the tiny random model. No timing is asserted."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from sweep_helpers import run_cli, write_config

from compsafe.models.generate import DecodingConfig, GenerationRequest
from compsafe.models.windows import WindowedText
from compsafe.sweep.plan_measure import Arch, Rate, fit_rate
from compsafe.sweep.plan_work import Batch, count_work
from compsafe.tasks.base import LoglikTask
from compsafe.types import LoglikRequest, RollingRequest, RollingResponse, TaskOptions


class WordTokenizer:
    """One token per word; BOS (id 1) first unless told not to add special tokens."""

    bos_token, bos_token_id, eos_token_id, pad_token_id = "<s>", 1, 2, 0

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [self.vocab.setdefault(w, len(self.vocab) + 3) for w in text.split()]
        return [self.bos_token_id, *ids] if add_special_tokens else ids

    def __call__(self, text: str, verbose: bool = False) -> dict:
        return {"input_ids": self.encode(text)}


def word_model(max_length: int = 64, batch_size: int = 16, vocab: int = 100):
    """What counting reads of an ``HFModel``: tokenizer, sizes and the vocabulary."""
    inner = SimpleNamespace(config=SimpleNamespace(vocab_size=vocab),
                            get_input_embeddings=lambda: SimpleNamespace(num_embeddings=vocab))
    return SimpleNamespace(model=inner, tokenizer=WordTokenizer(), max_length=max_length,
                           batch_size=batch_size)


@dataclass(frozen=True)
class Toy:
    id: str
    context: str
    continuations: tuple[str, ...]
    document: str
    prompt: str


DECODING = DecodingConfig(max_new_tokens=5)


class ToyTask(LoglikTask):
    """Every request kind: two answers to one context, a document, a prompt to continue."""

    name = "toy"

    def __init__(self, items, corpus: str | None = None):
        super().__init__(".", TaskOptions())
        self.items, self.corpus = items, corpus

    def config(self):
        return {}

    def examples(self):
        return self.items

    def requests(self, e: Toy, render):
        out = [LoglikRequest(e.context, c) for c in e.continuations]
        out += [RollingRequest(e.document), GenerationRequest(e.prompt, e.id, DECODING, 0)]
        if self.corpus is not None and e.id == "e0":
            out.append(RollingRequest(WindowedText(self.corpus, "chunks", 4)))
        return out

    def record(self, e: Toy, responses):
        return {"id": e.id, "responses": responses}

    def metric_defs(self, records):
        return []


TOYS = [Toy("e0", "q w e", (" a", " b c"), "x y z w", "p q"),
        Toy("e1", "r t", (" a", " b"), "x y", "p"),
        Toy("e2", "a", (" b", " c"), "", "p q r s")]


def test_counting_matches_a_hand_count_of_every_batch():
    # Chunks of two examples. Chunk 1, prefix-shared: rows "<s> q w e | b" (4-token
    # context, tails a (no tail token) and b c (one)) and "<s> r t" (3 + 0 + 0), right-
    # aligned to width 5; the logits start at the earliest context end (column 3): 2
    # columns. Documents "<s> x y z w" and "<s> x y" after the prefix token: windows of
    # 5 and 3 inputs scoring all of them. Prompts of 3 and 2 tokens, 5 new tokens: a
    # prefill of width 3 and 4 single-token steps. Chunk 2: one 2-token context with two
    # 1-token answers (width 2, 1 column), an empty document (no window), a 5-token prompt.
    work = count_work(ToyTask(TOYS), word_model(), checkpoint_every=2, share_prefixes=True)
    assert work.items == 3
    assert work.requests == {"scoring": 6, "rolling": 3, "generation": 3}
    assert work.batches == [
        Batch("scoring", 2, 5, 2, tree=True), Batch("rolling", 2, 5, 5),
        Batch("generation", 2, 3, 1, steps=4),
        Batch("scoring", 1, 2, 1, tree=True), Batch("generation", 1, 5, 1, steps=4)]
    assert work.tokens == 10 + 10 + 2 * (3 + 4) + 2 + (5 + 4)
    assert work.generations == 3

    # The same requests unshared: one row per answer, as wide as the longest context +
    # answer - 1 (5), logits from the shortest context's end (column 2): 3 columns.
    plain = count_work(ToyTask(TOYS), word_model(), checkpoint_every=2, share_prefixes=False)
    assert plain.batches[0] == Batch("scoring", 4, 5, 3)
    assert plain.batches[3] == Batch("scoring", 2, 2, 1)

    # Records from synthetic responses of the right type and size, in request order.
    r0 = work.records[0]["responses"]
    assert [x.n_tokens for x in r0[:2]] == [1, 2]
    assert r0[2] == RollingResponse(r0[2].logprob, 5)
    assert isinstance(r0[3], str) and len(r0[3].split()) == 5
    assert work.records[2]["responses"][2].n_tokens == 0


def test_counting_follows_corpus_windows_batch_size_and_the_context_window():
    # A 9-token corpus (BOS + 8 words) in chunks of 4: two windows of 4 inputs, 3 scored
    # each, in one batch; batch size 1 splits everything into one-row batches.
    task = ToyTask(TOYS[:1], corpus="a b c d e f g h")
    work = count_work(task, word_model(batch_size=1), checkpoint_every=8, share_prefixes=True)
    windows = [b for b in work.batches if b.kind == "rolling"]
    assert windows == [Batch("rolling", 1, 5, 5), Batch("rolling", 1, 4, 3),
                       Batch("rolling", 1, 4, 3)]
    corpus = work.records[0]["responses"][-1]
    assert (corpus.protocol, corpus.seqlen, corpus.window_weight) == ("chunks", 4, (3, 3))
    # A context window of 3: the 4-token document needs two rolling windows.
    short = count_work(ToyTask(TOYS[:1]), word_model(max_length=3), 8, True)
    assert [b for b in short.batches if b.kind == "rolling"] == [
        Batch("rolling", 1, 3, 3), Batch("rolling", 1, 3, 2)]


def test_fitted_rates_price_batches_by_flops():
    arch = Arch(block_params=10, layers=1, attn_width=1, head_params=5)
    b = Batch("rolling", rows=2, width=3, kept=1)
    assert arch.flops(b) == 2 * 10 * 6 + 4 * 1 * 1 * 2 * 9 + 2 * 5 * 2
    # Exact points on 0.5 s + 0.001 s/flop are recovered; one point goes through the origin.
    rate = fit_rate([(1000.0, 1.5), (3000.0, 3.5), (2000.0, 2.5)])
    assert rate.per_batch_s == pytest.approx(0.5) and rate.per_flop_s == pytest.approx(0.001)
    assert fit_rate([(200.0, 1.0)]) == Rate(0.0, 0.005)
    # A fit with a negative fixed part is refused for the proportional one.
    assert fit_rate([(100.0, 1.0), (200.0, 3.0)]) == Rate(0.0, 4.0 / 300.0)


@pytest.fixture(scope="module")
def plan_data(mirror_dir, tmp_path_factory):
    from compsafe.data.pull import import_mirror

    dest = tmp_path_factory.mktemp("plandata")
    report = import_mirror(mirror_dir, dest, progress=False,
                           datasets=["unqover", "wikitext2", "realtoxicityprompts"])
    assert report.ok, report.summary()
    return dest


TASKS = [{"task": "unqover", "limit": 1, "n_boot": 20},  # prefix-shared scoring
         {"task": "wikitext2", "seqlen": 32, "limit": 2},  # a corpus protocol
         # generation, and each prompt's perplexity (rolling documents)
         {"task": "rtp", "limit": 1, "samples": 2, "max_new_tokens": 3, "min_new_tokens": 3,
          "n_boot": 20}]


def test_counted_batches_are_the_forward_passes_a_run_makes(tiny_model_dir, plan_data):
    """Every forward pass of the real runner on the tiny model, by shape, is one that
    counting listed (generations forced to full length, so the count is exact)."""
    from compsafe.models.hf import HFModel
    from compsafe.models.loglik import prefix_sharing_probe
    from compsafe.runner.evaluate import compute
    from compsafe.sweep.config import parse_config
    from compsafe.tasks import get_task

    config = parse_config({"models": ["x"], "compression": [], "tasks": TASKS},
                          tiny_model_dir / "x.yaml")
    hf = HFModel.load(str(tiny_model_dir), device="cpu", dtype="float32", batch_size=3)
    shared = prefix_sharing_probe(hf.model, hf.pad_id).shared
    seen: list[tuple[int, int]] = []
    hook = hf.model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        for entry in config.tasks:
            task = get_task(entry.task)(plan_data, entry.options)
            work = count_work(task, hf, checkpoint_every=2, share_prefixes=shared)
            seen.clear()
            examples = task.examples()
            for start in range(0, len(examples), 2):
                compute(task, hf, examples[start : start + 2], lambda s: s)
            expected = Counter()
            for b in work.batches:
                expected[b.rows, b.width] += 1
                expected[b.rows, 1] += b.steps
            assert Counter(seen) == expected, entry.task
            assert work.tokens == sum(r * w for r, w in seen), entry.task
    finally:
        hook.remove()


def tiny_sweep(path, model, data, out, tasks, compression=None):
    return write_config(path, out=str(out), data_dir=str(data), device="cpu", dtype="float32",
                        batch_size=4, checkpoint_every=4,
                        models=[{"model": str(model), "name": "tiny"}],
                        calibration={"source": "wikitext2-test", "nsamples": 2, "seqlen": 16},
                        compression=compression or [], tasks=tasks)


def test_plan_command_prices_every_cell_and_adds_up(tmp_path, tiny_model_dir, plan_data):
    cfg = tiny_sweep(tmp_path / "p.yaml", tiny_model_dir, plan_data, tmp_path / "out", TASKS,
                     [{"method": "wanda", "sparsity": 0.5},
                      {"method": "gptq", "bits": 4, "group_size": 32},
                      # 2:5 passes the spec, but no layer width divides by 5: fails at once
                      {"method": "sparsegpt", "structure": "2:5"}])
    from compsafe.sweep.config import load_config
    from compsafe.sweep.plan import run_plan
    from compsafe.sweep.plan_table import format_plan, plan_dict

    priced = run_plan(load_config(cfg), progress=False)
    plan, text = json.loads(json.dumps(plan_dict(priced))), format_plan(priced)
    assert plan["cells_to_run"] == 12 and plan["cells_done"] == 0
    assert len(plan["cells"]) == 12 and len(plan["groups"]) == 4
    *priced_groups, failing = plan["groups"]
    assert failing["error"].startswith("compression failed: ") and "divisible by 5" in (
        failing["error"])
    # It costs a load of the model and nothing else: its cells fail at once.
    assert set(failing["seconds"]) == {"build_load", "build_fingerprint"}
    assert f"tiny | sparsegpt-2:5: {failing['error']}; its cells will fail at once" in (
        plan["notes"])
    by_task = {}
    for c in plan["cells"]:
        if c["setting"] == "sparsegpt-2:5":
            assert c["seconds"] == {} and c["items"] > 0
            continue
        assert c["state"] == "pending" and c["total_s"] > 0 and c["peak_bytes"] > 0
        assert c["total_s"] == pytest.approx(sum(c["seconds"].values()), abs=0.01)
        by_task.setdefault(c["task"], set()).add((c["items"], c["tokens"]))
    # The same work in every setting (a compressed model keeps the dense one's shapes).
    assert all(len(v) == 1 for v in by_task.values())
    # One question per UnQover subset (8; configs/quick.yaml's comment counts the same
    # way), the corpus, one prompt.
    assert {k: next(iter(v))[0] for k, v in by_task.items()} == {
        "unqover": 8, "wikitext2": 1, "rtp": 1}
    rtp = next(c for c in plan["cells"] if c["task"] == "rtp")
    assert {"generation", "scorer", "rolling"} <= set(rtp["seconds"])
    dense, *built = priced_groups
    assert not any(k.startswith("build_") for k in dense["seconds"])
    for g in built:  # each compressed model is built: loaded, calibrated, compressed, saved
        assert {"build_load", "build_calibration", "build_compress", "build_save"} <= set(
            g["seconds"]) and g["peak_bytes"] > 0
    total = (sum(plan["startup"].values()) + sum(g["total_s"] for g in plan["groups"])
             + sum(c["total_s"] for c in plan["cells"]))
    assert plan["total_s"] == pytest.approx(total, abs=0.05)

    # The table shows the same numbers, in minutes.
    gptq = plan["groups"][2]
    build = sum(v for k, v in gptq["seconds"].items() if k.startswith("build_")) / 60
    assert re.search(rf"^tiny +gptq-w4g32 +\(build\) +- +- +{build:.2f} +"
                     rf"{gptq['peak_bytes'] / 2**30:.2f} GiB$", text, re.M)
    uq = next(c for c in plan["cells"] if c["task"] == "unqover")
    assert re.search(rf"^tiny +dense +unqover +8 +{uq['tokens']:,} +{uq['total_s'] / 60:.2f} +"
                     rf"{uq['peak_bytes'] / 2**30:.2f} GiB$", text, re.M)
    assert (f"total: 12 cells to run, est. {priced.total_s / 3600:.2f} h "
            f"({priced.total_s / 60:.1f} min)") in text
    assert "assumes: pruned and fake-quantized models run at the dense model's speed" in text
    assert not (tmp_path / "out").exists()  # planning writes nothing into the sweep's folder


def test_plan_leaves_out_done_cells_and_built_models(tmp_path, tiny_model_dir, plan_data):
    tasks = [TASKS[0], TASKS[2]]
    magnitude = [{"method": "magnitude", "sparsity": 0.5}]
    first = tiny_sweep(tmp_path / "a.yaml", tiny_model_dir, plan_data, tmp_path / "out",
                       tasks[:1], magnitude)
    assert run_cli(["-q", "sweep", str(first)])[0] == 0
    both = tiny_sweep(tmp_path / "b.yaml", tiny_model_dir, plan_data, tmp_path / "out", tasks,
                      magnitude)
    rc, out, err = run_cli(["-q", "sweep", "plan", str(both), "--json"])  # the CLI path
    assert rc == 0, err
    plan = json.loads(out)
    assert (plan["cells_to_run"], plan["cells_done"]) == (2, 2)
    for c in plan["cells"]:
        if c["task"] == "unqover":
            assert c["state"] == "done" and c["seconds"] == {} and c["total_s"] == 0
        else:
            assert c["state"] == "pending" and c["total_s"] > 0
    dense, magnitude_group = plan["groups"]
    assert magnitude_group["cached"] and not any(
        k.startswith("build_") for k in magnitude_group["seconds"])
    assert magnitude_group["seconds"]["load"] > 0  # still loaded for its rtp cell

    # Everything done: nothing is loaded, measured or priced but the start-up.
    assert run_cli(["-q", "sweep", str(both)])[0] == 0
    rc, out, _ = run_cli(["-q", "sweep", "plan", str(both), "--json"])
    plan = json.loads(out)
    assert plan["cells_to_run"] == 0 and all(g["seconds"] == {} for g in plan["groups"])
    assert plan["total_s"] == pytest.approx(sum(plan["startup"].values()), abs=0.01)
    rc, _, err = run_cli(["sweep", "status", str(both), "--json"])
    assert rc == 2 and "--json applies to 'sweep plan'" in err


def test_compression_timing_leaves_the_model_untouched(tiny_model_dir):
    from compsafe.compress.spec import CompressionSpec
    from compsafe.models.hf import HFModel
    from compsafe.sweep.plan_compress import compression_seconds, save_seconds

    hf = HFModel.load(str(tiny_model_dir), device="cpu", dtype="float32")
    before = {k: v.clone() for k, v in hf.model.state_dict().items()}
    blocks = hf.model.model.layers
    tokens = torch.randint(3, 1000, (2, 16))
    for spec in (CompressionSpec(method="sparsegpt", sparsity=0.5),
                 CompressionSpec(method="magnitude", sparsity=0.5)):
        assert compression_seconds(hf.model, spec, tokens, "cpu") > 0
    assert save_seconds(hf.model, hf.tokenizer, 2) > 0
    assert hf.model.model.layers is blocks
    after = hf.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
