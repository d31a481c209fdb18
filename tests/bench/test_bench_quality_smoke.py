"""bench/bench_quality.py --smoke, one seed: every arm trained once, alignment scored and read from its low end,
the paired differences equal the raw runs' differences, and --tables-only names a seed that is missing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "bench_quality.py"


def run_bench(*options: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", *options], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    run_bench("--seeds", "0", "--work-dir", str(root / "work"), "--out", str(root / "out"))
    return root, json.loads((root / "out" / "smoke_quality.json").read_text())


def test_every_arm_once_and_alignment_in_the_tables(smoke):
    root, payload = smoke
    (seed,) = payload["per_seed"]
    selections = payload["settings"]["story"]["selections"]
    arms = {(r["column"], r["keep"]) for r in seed["runs"]}
    assert arms == {("full", 1.0), ("clean", 1.0)} | {(c, k) for c in selections for k in (0.25, 0.5, 0.75)}
    assert len(seed["runs"]) == len(arms)
    by_arm = {(r["column"], r["keep"]): r for r in seed["runs"]}
    assert by_arm[("resonance_alignment", 0.5)]["drop"] == "lowest" and by_arm[("resonance", 0.5)]["drop"] == "highest"
    assert by_arm[("clean", 1.0)]["n_train"] == by_arm[("full", 1.0)]["n_train"] == seed["n"]["pool"]
    scorers = {r["scorer"] for r in seed["auroc"]}
    assert {"resonance_alignment", "resonance_alignment_grad", "baseline_loss", "baseline_length"} <= scorers
    assert seed["n"]["reference"] > 0 and payload["machine"]["torch_threads"] == 1
    makeup = {(m["column"], m["keep"]): m["flawed_share_kept"] for m in seed["makeup"]}
    assert makeup[("clean", 1.0)] == 0.0 and makeup[("full", 1.0)] == pytest.approx(0.3)
    table = (root / "out" / "smoke_quality.md").read_text()
    for heading in ("## AUROC against the flaw labels", "## Retrained accuracy", "## Held-out loss",
                    "## Paired with the full pool", "## Paired with random selection"):  # fmt: skip
        assert heading in table
    assert "| resonance_alignment | lowest |" in table
    for name in ("smoke_score_histograms.png", "smoke_roc.png", "smoke_accuracy_vs_kept.png"):
        assert (root / "out" / name).read_bytes()[:4] == b"\x89PNG"


def test_paired_differences_are_the_runs_differences(smoke):
    _, payload = smoke
    (seed,) = payload["per_seed"]
    by_arm = {(r["column"], r["keep"]): r for r in seed["runs"]}
    vs_full = {(r["column"], r["keep"]): r for r in payload["aggregate"]["paired_vs_full"]}
    vs_random = {(r["column"], r["keep"]): r for r in payload["aggregate"]["paired_vs_random"]}
    for (column, keep), run in by_arm.items():
        if column == "full":
            continue
        expected = run["heldout_loss"] - by_arm[("full", 1.0)]["heldout_loss"]
        assert vs_full[(column, keep)]["d_heldout_loss_mean"] == pytest.approx(expected, abs=1e-12)
        if keep < 1.0 and column != "baseline_random":
            expected = run["accuracy"] - by_arm[("baseline_random", keep)]["accuracy"]
            assert vs_random[(column, keep)]["d_accuracy_mean"] == pytest.approx(expected, abs=1e-12)
    assert ("clean", 1.0) in vs_full and ("clean", 1.0) not in vs_random


def test_tables_only_names_the_missing_seed_and_trains_nothing(smoke):
    root, _ = smoke
    out = run_bench(
        "--seeds", "0", "1", "--work-dir", str(root / "work"), "--out", str(root / "tables"), "--tables-only"
    )
    assert "**Seeds missing** (not run or not finished scoring): [1]." in out
    assert "] warm-up done" not in out and not (root / "work" / "seed1").exists()
    payload = json.loads((root / "tables" / "smoke_quality.json").read_text())
    assert payload["settings"]["missing_seeds"] == [1] and [r["seed"] for r in payload["per_seed"]] == [0]
