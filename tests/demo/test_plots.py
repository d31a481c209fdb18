"""The lab's figures: PNGs written, and the caller's matplotlib backend and pyplot figures left as they were."""

import json
import subprocess
import sys

import numpy as np
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
