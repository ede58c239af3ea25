"""The HTML report: escaping, structure, the ``compsafe report`` CLI and its errors, and the
page as headless Chromium renders it (no console errors, every image loads, a
``<script>alert(1)</script>`` generation shows as text, a screenshot with real content)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_fixtures import SCRIPT, build_store

from compsafe.cli import main
from compsafe.report.html import Markup, el, esc, join, table
from compsafe.store import Store

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SECTIONS = ("summary", "degeneration", "representational", "language_modeling", "tradeoffs",
            "data", "methods")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    build_store(root / "runs" / "compsafe.sqlite", n_boot=20)
    out = root / "report"
    assert main(["-q", "report", str(root / "runs"), "--out", str(out), "--n-boot", "100",
                 "--fdr", "0.05", "--seed", "3"]) == 0
    return out


# -- the builder ---------------------------------------------------------------------------

def test_el_escapes_text_and_attributes_but_not_markup():
    html = el("p", SCRIPT, el("b", "x & y"), None, ["<i>", Markup("<br>")],
              title='say "hi" <now>', class_="c", hidden=True, skip=None)
    assert html == ('<p title="say &quot;hi&quot; &lt;now&gt;" class="c" hidden>'
                    f'{ESCAPED}<b>x &amp; y</b>&lt;i&gt;<br></p>')
    assert esc(esc("<a>")) == "&lt;a&gt;"  # escaping twice does not double-escape
    assert join(["<a>", el("i", "b")], ", ") == "&lt;a&gt;, <i>b</i>"
    t = table(["h<1>"], [[SCRIPT]], [True])
    assert ESCAPED in t and "<script" not in t and 'class="num"' in t


# -- the report folder ---------------------------------------------------------------------

def test_report_folder_layout_and_escaping(report):
    html = (report / "index.html").read_text(encoding="utf-8")
    # The report has no JavaScript at all, so any <script in it came from data.
    assert "<script" not in html.lower()
    assert ESCAPED in html  # the group name and the generation, shown as text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; friends" in html
    for anchor in SECTIONS:
        assert f'id="{anchor}"' in html, anchor
    # summary first: the harmful changes come before any dimension section
    assert html.index('id="summary"') < html.index('id="degeneration"')
    assert "What got worse, and for whom" in html and "▲ worse" in html
    # safety leads: language-modelling changes are context, after the safety table
    summary = html[html.index('id="summary"'):html.index("Divergent groups")]
    context = summary.index("Language modelling and downstream:")
    assert "wikitext2" not in summary[:context] and "wikitext2" in summary[context:]
    # grouped by dimension, safety dimensions in the study's order
    assert summary.index("<h3>Degeneration harm") < summary.index("<h3>Representational harm")
    assert "Most toxic generations per setting" in html
    # the offline scorer is named, and its metrics are called what it measures
    assert "Mean profanity score [profanity]" in html and "Mean toxicity score" not in html
    # every local reference exists; nothing is fetched from the network
    refs = re.findall(r'(?:src|href)="([^"#][^"]*)"', html)
    assert refs, "no figures or downloads linked"
    for ref in refs:
        assert not re.match(r"^[a-z]+:", ref), f"external reference {ref}"
        assert (report / ref).is_file(), ref
    assert len(list((report / "figures").glob("*.png"))) >= 4
    assert any(p.suffix == ".csv" for p in (report / "data").iterdir())
    # methods footer states what the numbers depend on
    assert "profanity vtest: alt-profanity-check, a profanity classifier" in html
    for fact in ("Benjamini", "bootstrap replicates", "100", "seed", "compsafe version",
                 "compsafe (runs of different protocols are never paired", "protocol.md"):
        assert fact in html, fact


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, report):
    missing = tmp_path / "nope"
    assert main(["report", str(missing), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not found" in err and str(missing) in err

    empty = tmp_path / "empty" / "compsafe.sqlite"
    Store(empty).close()
    assert main(["report", str(empty.parent), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no metric rows" in err

    store = report.parent / "runs"
    assert main(["report", str(store), "--baseline", "fp16", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'fp16'" in err and "dense" in err and "wanda-50" in err
    assert not (tmp_path / "r" / "index.html").exists()


# -- headless Chromium ---------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Injected into a test copy of the page only (the report itself has no script): a called
# alert() and an image that did not load are logged as console messages.
PROBE = """<script>
window.alert = function (m) { console.error("ALERT CALLED " + m); };
window.addEventListener("load", function () {
  var bad = 0;
  for (var img of document.images) {
    if (!img.complete || img.naturalWidth === 0) {
      bad++;
      console.error("BROKEN IMAGE " + img.src);
    }
  }
  console.log("PROBE images=" + document.images.length + " broken=" + bad);
});
</script>"""
CONSOLE = re.compile(r'CONSOLE[^\]]*\] "(.*)", source: (\S+)')


def _browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless Chromium on PATH (Debian: apt-get install chromium; CI installs "
                "it in .ci/run)")


def _chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [_browser(), "--headless=new", "--disable-gpu", "--no-sandbox",
           "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
           "--virtual-time-budget=10000", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _console(stderr: str) -> list[str]:
    return [m.group(1) for m in CONSOLE.finditer(stderr)]


def _probe(page: Path, tmp_path: Path) -> list[str]:
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1),
                     encoding="utf-8")
    try:
        return _console(_chromium(probe, tmp_path, "--dump-dom").stderr)
    finally:
        probe.unlink()


def test_probe_catches_a_missing_image(tmp_path):
    """The browser check can fail: a page with a missing image is reported as broken."""
    page = tmp_path / "index.html"
    page.write_text('<!DOCTYPE html><html><head></head><body><img src="gone.png">'
                    "</body></html>", encoding="utf-8")
    messages = _probe(page, tmp_path)
    assert any("BROKEN IMAGE" in m for m in messages), messages


def test_report_renders_in_headless_chromium(report, tmp_path):
    index = report / "index.html"
    shot = tmp_path / "report.png"
    run = _chromium(index, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert run.returncode == 0, run.stderr[-2000:]
    assert _console(run.stderr) == []  # no console message of any kind
    # The screenshot exists and has content: text, tables and coloured figures.
    from PIL import Image

    assert shot.stat().st_size > 50_000
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        colours = im.convert("RGB").getcolors(maxcolors=1_000_000)
    assert len(colours) > 200

    dom = _chromium(index, tmp_path, "--dump-dom")
    assert ESCAPED in dom.stdout and "<script" not in dom.stdout.lower()
    assert "What got worse, and for whom" in dom.stdout

    messages = _probe(index, tmp_path)
    n_images = len(re.findall(r"<img ", index.read_text(encoding="utf-8")))
    assert n_images >= 4
    assert messages == [f"PROBE images={n_images} broken=0"], messages
