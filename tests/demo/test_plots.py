"""The demo's figures: PNGs written, read like the report (labelled axes, readable units, the same colours), and
the caller's matplotlib backend and pyplot figures left as they were."""

import json
import subprocess
import sys

import numpy as np
import pytest
from datasets import Dataset

from resofilter_hf.demo.plots import plot_histograms, plot_roc, plot_sweep


def scored(n: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    flaws = ["none", "truncated", "off_topic", "none"] * (n // 4)
    return Dataset.from_dict(
        {"flaw": flaws, "resonance": rng.normal(size=n).tolist(), "baseline_loss": rng.random(n).tolist()}
    )


SWEEP = [
    {"column": c, "keep": k, "seed": s, "accuracy": 0.1 * k + 0.01 * s, "heldout_loss": 2.0 - k}
    for c in ("resonance", "baseline_loss")
    for k in (0.5, 1.0)
    for s in (0, 1)
]


def test_each_plot_writes_a_png(tmp_path):
    ds = scored()
    paths = [
        plot_histograms(ds, ["resonance", "baseline_loss"], tmp_path / "a" / "hist.png"),
        plot_roc(ds, ["resonance", "baseline_loss"], tmp_path / "b" / "roc.png"),
        plot_sweep(SWEEP, tmp_path / "c" / "sweep.png", title="tiny"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def test_plots_leave_the_users_backend_and_figures_alone(tmp_path):
    """A user on another backend, with a pyplot figure open, writes every figure the library draws."""
    code = f"""
import json
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from datasets import Dataset
from resofilter_hf.demo.plots import plot_histograms, plot_roc, plot_sweep
from resofilter_hf.hub.analysis import axis_for
from resofilter_hf.hub.figures import distribution_figure, save_png

mine = plt.figure()
ds = Dataset.from_dict({{"flaw": ["none", "truncated"] * 5, "resonance": np.arange(10.0).tolist()}})
plot_histograms(ds, ["resonance"], {str(tmp_path / "h.png")!r})
plot_roc(ds, ["resonance"], {str(tmp_path / "r.png")!r})
plot_sweep({SWEEP!r}, {str(tmp_path / "s.png")!r})
save_png(distribution_figure(np.arange(10.0), axis_for("s", np.arange(10.0)), cuts={{"keep50": 4.5}}), {str(tmp_path / "c.png")!r})
print(json.dumps({{"backend": matplotlib.get_backend(), "figures": plt.get_fignums(), "current": plt.gcf() is mine}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == {"backend": "svg", "figures": [1], "current": True}
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["c.png", "h.png", "r.png", "s.png"]


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions save (captured at `_save`), so their axes can be read."""
    from resofilter_hf.demo import plots

    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: figures.append(fig) or save(fig, path, dpi))
    return figures


def test_histograms_read_like_the_report(drawn, tmp_path):
    """Axis labels, no offset notation ("1e-9+1e-5"), the paper's score in ppm from lr, the report's colours."""
    from matplotlib.colors import to_hex

    from resofilter_hf.hub.figures import CLEAN_COLOR, label_groups
    from resofilter_hf.provenance import with_provenance

    rng = np.random.default_rng(0)
    n = 40
    paper = 1e-5 * (1 + 1e-4 * rng.standard_normal(n))  # the paper's score: lr times 1 +- a few 1e-4
    ds = with_provenance(scored(n).remove_columns("resonance").add_column("resonance", paper.tolist()),
                         scoring={"lr": 1e-5})  # fmt: skip
    plot_histograms(ds, ["resonance", "baseline_loss"], tmp_path / "h.png")
    fig = drawn[-1]
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.patches]
    assert [ax.get_xlabel() for ax in panels] == ["resonance: deviation from lr = 1e-05, parts per million",
                                                  "baseline_loss"]  # fmt: skip
    assert all(ax.get_ylabel() == "rows" for ax in panels)
    assert all(ax.xaxis.get_offset_text().get_text() == "" for ax in panels)
    expected = {name.split(" (")[0]: color for name, _, color in label_groups(ds["flaw"])}
    assert expected["none"] == CLEAN_COLOR
    for patch in panels[0].patches:
        if patch.get_label().split(" (")[0] in expected:
            assert to_hex(patch.get_facecolor()) == expected[patch.get_label().split(" (")[0]]


def test_roc_axes_are_labelled(drawn, tmp_path):
    plot_roc(scored(), ["resonance", "baseline_loss"], tmp_path / "r.png")
    used = [ax for ax in drawn[-1].axes if ax.lines]
    assert used and all(ax.get_xlabel().startswith("false positive rate") for ax in used)
    assert all(ax.get_ylabel().startswith("true positive rate") for ax in used)


def test_sweep_legend_shows_error_bars_only_when_there_are_some(drawn, tmp_path):
    from matplotlib.container import ErrorbarContainer

    one_seed = [row for row in SWEEP if row["seed"] == 0]
    plot_sweep(one_seed, tmp_path / "one.png")
    assert not any(isinstance(c, ErrorbarContainer) for ax in drawn[-1].axes for c in ax.containers)
    plot_sweep(SWEEP, tmp_path / "two.png")  # two seeds: real bars
    assert sum(isinstance(c, ErrorbarContainer) for ax in drawn[-1].axes for c in ax.containers) == 4
