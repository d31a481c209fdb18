"""bench/gpu_check.py --smoke as CI runs it: every step measured or skipped with a reason, parity within its
tolerances, QLoRA adapters still learning, the JSON and the markdown table written; a spent budget skips cleanly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"
STEPS = ["parity", "throughput", "smollm2", "inflight", "qlora", "profile"]


def run_check(out: Path, *options: str) -> tuple[dict, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(out), *options],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (json_path,) = out.glob("gpu-check-cpu-*.json")
    markdown = json_path.with_suffix(".md")
    assert markdown.is_file(), "the markdown table must be written beside the JSON"
    return json.loads(json_path.read_text()), markdown.read_text()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return run_check(tmp_path_factory.mktemp("gpu-check"), "--profile")


def test_machine_and_every_step_accounted_for(smoke):
    payload, _ = smoke
    assert payload["mode"] == "smoke" and payload["failed"] == []
    info = payload["machine"]
    assert info["device"] == "cpu" and info["device_name"] and info["torch"] and info["torch_threads"] == 1
    assert [s["name"] for s in payload["steps"]] == STEPS
    for step in payload["steps"]:
        assert step["status"] in ("measured", "skipped"), step
        if step["status"] == "skipped":
            assert step["reason"], f"{step['name']} skipped without a reason"
        else:
            assert step["result"] and step["wall_s"] > 0
    assert payload["wall_s"] < 120  # the smoke budget


def test_parity_passed_within_the_stated_tolerances(smoke):
    result = next(s for s in smoke[0]["steps"] if s["name"] == "parity")["result"]
    cases = {(c["arch"], c["case"]): c for c in result["cases"]}
    assert {arch for arch, _ in cases} == {"llama", "qwen2", "gemma2"}
    for (_, label), case in cases.items():
        assert case["tolerance"] == (1e-5 if label.startswith("float32") else 1e-9)
        assert 0 <= case["max_rel_err"] <= case["tolerance"] and case["passed"], case
    assert result["passed"]
    lengths = cases[("llama", "float64 adamw")]["row_lengths"].split("-")
    assert lengths[0] != lengths[1], "SDPA architectures are checked on padded batches of uneven rows"


def test_throughput_inflight_qlora_and_profile_results(smoke):
    results = {s["name"]: s["result"] for s in smoke[0]["steps"]}
    tasks = {t["task"]: t for t in results["throughput"]["tasks"]}
    for bs in (2, 4):
        for kind in ("engine fp32", "engine bf16", "engine lora", "forward bf16", "train bf16"):
            entry = tasks[f"{kind} bs{bs}"]
            assert entry["samples_per_s"] > 0 and entry["over_loop"] > 0, entry
            assert ("over_forward" in entry) == (kind != "forward bf16")
    assert tasks["loop fp32"]["batch_size"] == 1 and tasks["loop fp32"]["samples_per_s"] > 0
    assert all(len(runs) == 2 for runs in results["throughput"]["runs"].values())  # two interleaved rounds
    smollm2 = results["smollm2"]  # the same tasks on SmolLM2-135M's shape (toy-sized here)
    assert results["throughput"]["shape"] == "smoke-gemma-2" and smollm2["shape"] == "smoke-smollm2"
    assert [t["task"] for t in smollm2["tasks"]] == list(tasks)
    assert all(t["samples_per_s"] > 0 for t in smollm2["tasks"])
    inflight = results["inflight"]
    assert len(inflight["runs"]["sft"]) == len(inflight["runs"]["inflight"]) == 2
    assert inflight["overhead"] == pytest.approx(inflight["goal"]["value"])
    qlora = results["qlora"]
    assert qlora["passed"] and all(qlora["checks"].values()), qlora
    moved, total = map(int, qlora["adapters_moved"].split("/"))
    assert moved == total > 0
    assert results["profile"]["top_ops"] and "aten::" in results["profile"]["table"]


def test_markdown_table_has_a_row_per_step(smoke):
    payload, markdown = smoke
    assert markdown.startswith(f"# GPU check (smoke): {payload['machine']['device_name']}")
    for step in STEPS:
        assert f"| {step} | measured |" in markdown
    assert "| engine bf16 bs4 | 4 |" in markdown and "| gemma2 | float64 sgd |" in markdown
    assert "## Throughput: smoke-gemma-2, 32-token rows" in markdown
    assert "## Throughput: smoke-smollm2, 32-token rows" in markdown


def test_a_spent_budget_skips_every_step_with_its_reason(tmp_path):
    payload, markdown = run_check(tmp_path, "--budget-s", "0.01")
    for step in payload["steps"]:
        assert step["status"] == "skipped", step
        expected = "not asked for (run with --profile)" if step["name"] == "profile" else "time budget: "
        assert step["reason"].startswith(expected), step
    assert "| parity | skipped |" in markdown
