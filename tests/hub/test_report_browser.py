"""The report as a person sees it: headless Chromium opens the file from disk, every section renders, nothing is
logged to the console (no script error, no blocked fetch: the page's CSP reports any as a console message), and a
screenshot shows a drawn page. Skips, saying why, when Chromium is not installed (`.ci/run` installs Debian's)."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from publishing_data import scored_dataset
from report_page import ReportPage

import resofilter_hf
from resofilter_hf.provenance import with_provenance


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]  # fmt: skip
SECTIONS = ["summary", "distribution", "confounds", "rows", "rows-highest", "rows-cut", "rows-lowest", "keep-curve"]
SECTIONS += ["provenance", "selection-rule"]


def _chromium() -> str | None:
    for candidate in (os.environ.get("RESOFILTER_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (looked for $RESOFILTER_CHROMIUM, chromium, /usr/bin/chromium); "
    "install Debian's package with `apt-get install chromium` (.ci/run does when apt is available)",
)


def open_page(path: Path, work: Path, *args: str) -> tuple[str, list[str]]:
    """Open `path` from disk in a fresh profile: (stdout, the console messages Chromium logged)."""
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    profile.mkdir(parents=True)
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def test_the_console_check_sees_errors_and_blocked_fetches(tmp_path):
    """The checker itself: a page with a script error and an image from the network logs both."""
    page = tmp_path / "planted.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="img-src data:"></head>'
        '<body><script>console.error("planted"); notAFunction();</script><img src="https://example.com/x.png">'
        "</body></html>"
    )
    _, console = open_page(page, tmp_path, "--dump-dom")
    text = "\n".join(console)
    assert "planted" in text and "notAFunction" in text and "https://example.com/x.png" in text


def test_the_report_renders_every_section_without_console_messages(tmp_path):
    from PIL import Image

    scored = scored_dataset(300, seed=2)
    selected = resofilter_hf.select_by_resonance(scored, keep=0.8)  # a selection: its rule is shown too
    out = resofilter_hf.report(selected, tmp_path / "report.html", keep=0.5)
    dom, console = open_page(out, tmp_path, "--dump-dom")
    assert console == []
    page = ReportPage(dom)
    assert [anchor for anchor in SECTIONS if anchor not in page.ids] == []
    images = [a for tag, a in page.tags if tag == "img"]
    assert len(images) >= 3 and all(a["src"].startswith("data:image/png;base64,") for a in images)
    assert "keep 80% of the scored rows" in page.text  # the selection rule, from the provenance

    shot = tmp_path / "shot.png"
    _, console = open_page(out, tmp_path, f"--screenshot={shot}", "--window-size=1280,1800")
    assert console == []
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 1800)
    pixels = np.asarray(image)
    assert pixels[40, 20].tolist() != [255, 255, 255]  # the header band is drawn
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # text, tiles and the figures, not a blank page


def test_rows_holding_markup_stay_text_in_the_browser(tmp_path):
    n = 12
    hostile = ["<script>alert(1)</script>", '<img src=x onerror="alert(2)">', "**bold** [link](https://e.com)"]
    ds = Dataset.from_dict(
        {
            "prompt": [hostile[i % 3] + f" #{i}" for i in range(n)],
            "completion": [hostile[(i + 1) % 3] + f" {i}" for i in range(n)],
            "resonance": (1e-5 * (1 + 1e-4 * np.random.default_rng(0).standard_normal(n))).tolist(),
        }
    )
    out = resofilter_hf.report(with_provenance(ds, scoring={"lr": 1e-5}), tmp_path / "r.html")
    dom, console = open_page(out, tmp_path, "--dump-dom")
    assert console == []  # an injected handler or script would have been blocked, and logged
    page = ReportPage(dom)
    assert not any(tag == "script" for tag, _ in page.tags)
    assert all(a["src"].startswith("data:image/png;base64,") for tag, a in page.tags if tag == "img")
    for text in hostile:
        assert text in page.text
