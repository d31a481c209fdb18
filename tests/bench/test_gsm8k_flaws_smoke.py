"""bench/bench_gsm8k_flaws.py --smoke on the vendored GSM8K sample: every flaw kind in the pool, every scorer's
AUROC row and confound entry written, the markdown and the JSON beside each other, and a rerun resumed from the
cached seed result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "bench_gsm8k_flaws.py"
SAMPLE = REPO / "tests" / "data" / "gsm8k"
KINDS = {"wrong_step", "wrong_answer", "truncated", "mismatched", "repetition", "off_topic"}


def run(out: Path, work: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    command = [sys.executable, str(SCRIPT), "--smoke", "--gsm8k-dir", str(SAMPLE), "--out", str(out)]
    done = subprocess.run([*command, "--work-dir", str(work)], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_smoke_writes_every_table(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    run(out, work)
    (json_path,) = out.glob("gsm8k-flaws-smoke-cpu-*.json")
    payload = json.loads(json_path.read_text())
    assert payload["smoke"] and payload["machine"]["torch_threads"] == 1
    (seed,) = payload["seeds"]
    assert seed["n_pool"] == 40 and seed["flaw_counts"] == {"none": 28, **dict.fromkeys(KINDS, 2)}
    assert seed["statuses"] == {"ok": 40}
    scorers = {"resonance", "resonance_sgd", "resonance_grad_norm", "alignment_grad", "alignment_adamw",
               "baseline_loss", "baseline_ifd", "baseline_length", "baseline_random"}  # fmt: skip
    assert scorers <= set(seed["confounds"])
    rows = {(r["scorer"], r["flaw"]) for r in seed["auroc"]}
    assert {(s, k) for s in scorers for k in [*KINDS, "any"]} <= rows
    for r in seed["auroc"]:
        assert 0.0 <= r["auroc"] <= 1.0
    assert seed["confounds"]["baseline_length"]["length"] == pytest.approx(1.0)  # length against itself
    assert seed["confounds"]["baseline_loss"]["loss"] == pytest.approx(1.0)
    markdown = (out / "smoke_gsm8k_flaws.md").read_text()
    assert "## AUROC per flaw kind" in markdown and "| alignment_grad |" in markdown
    # a rerun reads the finished seed back instead of scoring again
    (seed_file,) = work.glob("seed0/result.json")
    seed_file.write_text(seed_file.read_text().replace('"n_pool": 40', '"n_pool": 41'))
    run(out, work)
    latest = max(out.glob("gsm8k-flaws-smoke-cpu-*.json"), key=lambda p: p.stat().st_mtime_ns)
    assert json.loads(latest.read_text())["seeds"][0]["n_pool"] == 41
