"""The data catalogue: every file compsafe can fetch, where it comes from, and its SHA-256.

Each :class:`Source` is one file. ``path`` is relative to the cache root
(:func:`compsafe.data.paths.data_dir`) and laid out exactly like the offline mirror
(``bbq/Age.jsonl``, ``unqover/word_lists/slots/religion_noact``, ``wikitext2/wikitext-test.txt``);
``url`` is a raw.githubusercontent.com URL pinned at the upstream commit recorded in
``shared/data/SOURCES.md``. Datasets covered: BBQ (Parrish et al. 2022), UnQover (Li et al.
2020), BOLD (Dhamala et al. 2021), ToxiGen (Hartvigsen et al. 2022), HolisticBias (Smith et al.
2022), Regard (Sheng et al. 2019), RealToxicityPrompts (Gehman et al. 2020; DecodingTrust's
subset), CrowS-Pairs (Nangia et al. 2020), StereoSet (Nadeem et al. 2021), AAVE/SAE pairs
(Groenwold et al. 2020), AAVE corpora, TwitterAAE (Blodgett et al. 2016), WikiText-2 (Merity
et al. 2016), MMLU (Hendrycks et al. 2021) and TruthfulQA (Lin et al. 2022) — the data of Xu
et al., "Beyond Perplexity" (EMNLP 2024), plus StereoSet.

Hashes of mirror files live in ``sources.tsv`` next to this module (path, sha256, size),
generated from ``shared/data/SHA256SUMS`` (regenerate it when the mirror grows). Files that
are not in the mirror are listed below by hand. ``sha256=None`` means the hash is unknown:
it is recorded on the first download (trust on first use) and later downloads must match it.
``url=None`` marks a file that was DERIVED rather than copied: it can be imported from a
mirror but not downloaded.

    for s in sources_for("bbq"): print(s.path, s.url)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from urllib.parse import quote

from compsafe.errors import UnknownNameError


@dataclass(frozen=True)
class Source:
    """One catalogued file: ``dataset/...`` path in the cache, pinned URL and SHA-256."""

    dataset: str
    path: str
    url: str | None
    sha256: str | None
    size: int | None = None
    optional: bool = False
    note: str = ""

    @property
    def downloadable(self) -> bool:
        return self.url is not None


_RAW = "https://raw.githubusercontent.com"
_BBQ = ("nyu-mll/BBQ", "bea11bd97d79217245b5871acd247b9d6eb24598")
_RNLP = ("facebookresearch/ResponsibleNLP", "0ec714eb084217f44cd9ac466d9e988c795302f9")
_NLG_BIAS = ("ewsheng/nlg-bias", "7f8d08ea4f33bf3368c5cb0d0ac5f9c515625546")

# Local path prefix -> (repo, commit, upstream prefix). First match wins, so the specific
# prefixes come before the general ones; a None repo means "no upstream copy exists".
_UPSTREAM: tuple[tuple[str, tuple[str, str] | None, str], ...] = (
    ("bbq/templates/", _BBQ, "templates/"),
    ("bbq/supplemental/", _BBQ, "supplemental/"),
    ("bbq/", _BBQ, "data/"),
    ("bold/", ("amazon-science/bold", "3ad652c773f5d1e30d5f6f61657ed934d768ecad"), ""),
    ("unqover/", ("allenai/unqover", "3e47969b78acc0de436f9d17c9ab1b2f6a108ff0"), ""),
    ("toxigen/toxiGen.json",
     ("microsoft/SafeNLP", "e351b6cb892284cf843b88e363b1a6dbaded584e"), "data/toxiGen.json"),
    ("toxigen/", ("microsoft/TOXIGEN", "01517e814639e0334c920a3c502036c8158aac87"), ""),
    ("holistic_bias/", _RNLP, "holistic_bias/dataset/"),
    ("regard/prompts.jsonl", None, ""),
    ("regard/demographics.txt", _NLG_BIAS, "data/demographics.txt"),
    ("regard/", _NLG_BIAS, "data/regard/"),
    ("realtoxicityprompts/",
     ("AI-secure/DecodingTrust", "161ae8321ced62f45fcd9ceb412e05b47c603cd4"),
     "data/toxicity/user_prompts/"),
    ("crows_pairs/", ("nyu-mll/crows-pairs", "8aaac11c485473159ec9328a65253a5be9a479dc"), "data/"),
    ("stereoset/", ("moinnadeem/StereoSet", "ead7d086a64a192a1eca88e0dd2fd163de375218"), "data/"),
    ("aave_sae_pairs/sae_samples.txt",
     ("sophiegroenwold/AAVE_SAE_dataset", "370149236fe9171f7ab21cf1cb07eb2bef9c1d0e"),
     "sae_samples.txt"),
    # The official repo ships only the SAE side; this course repo has both halves.
    ("aave_sae_pairs/",
     ("kristenvaccaro/CSE190-HW5", "0be188251ade1440abd7e46692e9b83b90f3c14d"), ""),
    ("aave_corpora/", ("jazmiahenry/aave_corpora", "8c0b26e7080f5e60bb3fd62b2061972b8941fb23"), ""),
    ("twitteraae/", ("mohummedalee/twitteraae-sentiment-data",
                     "a7728a1b804ca2eb0d1ee4b12e3af4694164ef40"), "data/raw/sentiment_race/"),
    ("wikitext2/", ("Deathnetworks/rotorquant", "c5be50f038e68e35740efdf4c6f5d65d61c2485b"), ""),
    ("mmlu/", _RNLP, "SMART-Filtering/datasets/mmlu/"),
    ("truthfulqa/", ("benedictflorance/truthfulqa_experiments",
                     "6fdfd38288e86296582a584694df5cf43d1f634a"), "datasets/"),
)

# Prefix -> (optional, note). Optional files are not needed by any compsafe task.
_NOTES = (
    ("bbq/templates/", True, "BBQ generation templates; reference only"),
    ("bbq/supplemental/", False, "official target_loc; same blob as analysis_scripts/"),
    ("holistic_bias/v1.0/", True, "superseded by v1.1, which the reference study uses"),
    ("regard/prompts.jsonl", False, "DERIVED from ROBBIE regard.py templates; mirror only"),
    ("realtoxicityprompts/nontoxic", False, "DecodingTrust subset of RTP"),
    ("realtoxicityprompts/toxic", False, "DecodingTrust subset of RTP"),
)

# Known URL, no published hash and no pinnable commit: trust on first use. Optional because
# they are large or served by hosts outside GitHub.
_UNPINNED = (
    ("realtoxicityprompts/prompts.jsonl",
     "https://huggingface.co/datasets/allenai/real-toxicity-prompts/resolve/main/prompts.jsonl",
     "full RTP, 99,442 prompts; hash recorded on first download"),
    ("twitteraae/helm/aa_tweets.csv",
     "https://worksheets.codalab.org/rest/bundles/0x31485f8c37ad481fb9f4e9bf7ccff6e5"
     "/contents/blob/aa_tweets.csv",
     "HELM TwitterAAE AA test set; hash recorded on first download"),
    ("twitteraae/helm/white_tweets.csv",
     "https://worksheets.codalab.org/rest/bundles/0x31485f8c37ad481fb9f4e9bf7ccff6e5"
     "/contents/blob/white_tweets.csv",
     "HELM TwitterAAE white test set; hash recorded on first download"),
)


def upstream_url(path: str) -> str | None:
    """The pinned raw.githubusercontent.com URL for a catalogue path, or None if derived."""
    for prefix, repo, upstream in _UPSTREAM:
        if path.startswith(prefix):
            if repo is None:
                return None
            owner_repo, commit = repo
            # Names such as "new_templates - Age.csv" carry spaces; quote keeps "/" intact.
            return f"{_RAW}/{owner_repo}/{commit}/{quote(upstream + path[len(prefix):])}"
    raise KeyError(f"no upstream rule for {path!r}")


def _make(path: str, sha256: str | None, size: int | None, url: str | None = "",
          optional: bool = False, note: str = "") -> Source:
    for prefix, opt, text in _NOTES:
        if path.startswith(prefix):
            optional, note = optional or opt, note or text
            break
    return Source(dataset=path.split("/", 1)[0], path=path,
                  url=upstream_url(path) if url == "" else url,
                  sha256=sha256, size=size, optional=optional, note=note)


@lru_cache(maxsize=1)
def _catalogue() -> tuple[Source, ...]:
    rows = []
    text = resources.files("compsafe.data").joinpath("sources.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            path, sha, size = line.split("\t")
            rows.append(_make(path, sha, int(size)))
    rows += [_make(path, None, None, url=url, optional=True, note=note)
             for path, url, note in _UNPINNED]
    return tuple(sorted(rows, key=lambda s: s.path))


def all_sources() -> tuple[Source, ...]:
    """Every catalogued file, sorted by path."""
    return _catalogue()


def datasets() -> list[str]:
    """The dataset names (top-level folders of the cache), sorted."""
    return sorted({s.dataset for s in all_sources()})


def sources_for(dataset: str) -> list[Source]:
    """The files of one dataset; an unknown name raises UnknownNameError listing the known."""
    found = [s for s in all_sources() if s.dataset == dataset]
    if not found:
        raise UnknownNameError("dataset", dataset, datasets())
    return found


def select(names: list[str] | tuple[str, ...] | None = None) -> list[Source]:
    """The files of the named datasets (all when ``names`` is None), in catalogue order."""
    if names is None:
        return list(all_sources())
    for name in names:
        sources_for(name)  # validates the name before any work starts
    wanted = set(names)
    return [s for s in all_sources() if s.dataset in wanted]
