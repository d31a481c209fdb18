"""The scoring pipeline: kill -9 resume, fingerprinted folders, formats, 0 rows, read-only runs, streams,
token budgets and the forward-only `losses()`."""

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, IterableDataset, load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.engine.scorer import ResonanceScorer, RowTooLongError
from resofilter_hf.engine.shards import ShardStore
from resofilter_hf.pipeline import source as pipeline_source
from resofilter_hf.toy import cached_tiny_model, make_math_problems


SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture(scope="module")
def model_dir():
    return cached_tiny_model(arch="llama")


def make(model_dir, out, dataset=None, model=None, dtype=torch.float32, **kwargs):
    args = dict(output_dir=str(out), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True)
    args.update(kwargs)
    model = model or AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    return ResonanceTrainer(
        model=model,
        args=ResonanceConfig(**args),
        train_dataset=dataset if dataset is not None else make_math_problems(2),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )


def folders(out: Path) -> list[Path]:
    return sorted(p for p in (out / "resonance").iterdir() if p.is_dir())


def same_bits(a, b) -> bool:
    return np.array_equal(
        np.asarray(a, dtype=np.float64).view(np.int64), np.asarray(b, dtype=np.float64).view(np.int64)
    )


def test_kill_9_mid_run_then_resume_is_bit_identical(model_dir, tmp_path):
    n = 48
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPTS / "score_rows.py"), str(model_dir), str(tmp_path / "cut"), str(n)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = list((tmp_path / "cut" / "resonance").glob("*/w*-s*.done"))
        if len(done) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (folder,) = folders(tmp_path / "cut")
    finished = {p.stem for p in folder.glob("w*-s*.done")}
    assert 3 <= len(finished) < n // 2, "killed mid-run"

    dataset = make_math_problems(n, seed=11, flaw_rate=0.5)  # the script's data and settings
    resumed = make(model_dir, tmp_path / "cut", dataset, dtype=torch.float64, resonance_batch_size=2).score()
    whole = make(model_dir, tmp_path / "whole", dataset, dtype=torch.float64, resonance_batch_size=2).score()
    assert same_bits(resumed["resonance"], whole["resonance"]) and len(resumed) == n
    ids = np.concatenate([ShardStore(folder).read([p.stem]).column("id").to_numpy() for p in folder.glob("*.done")])
    assert sorted(ids.tolist()) == list(range(n)), "no row lost, none scored twice"
    assert {p.stem for p in folder.glob("w*-s*.done")} >= finished


def test_a_changed_model_never_reuses_a_folder_and_the_old_one_is_named(model_dir, tmp_path, caplog):
    dataset = make_math_problems(6, seed=3)
    first = make(model_dir, tmp_path, dataset).score()
    (old,) = folders(tmp_path)

    changed = tmp_path / "model-rope"  # only rope_theta differs
    shutil.copytree(model_dir, changed)
    config = json.loads((changed / "config.json").read_text())
    config["rope_parameters"]["rope_theta"] = 500.0
    (changed / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="resofilter_hf"):
        rope = make(changed, tmp_path, dataset).score()
    assert len(folders(tmp_path)) == 2
    assert old.name in caplog.text and "Not reusing 1 other scoring folder" in caplog.text
    assert not np.allclose(rope["resonance"], first["resonance"], rtol=1e-9, atol=0)

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():  # one entry of a weight that no stride sample would see
        model.model.layers[0].mlp.down_proj.weight[17, 93] += 0.05
    nudged = make(model_dir, tmp_path, dataset, model=model).score()
    assert len(folders(tmp_path)) == 3
    assert not np.array_equal(nudged["resonance"], first["resonance"])
    again = make(model_dir, tmp_path, dataset).score()  # the original inputs: the original folder, reused
    assert len(folders(tmp_path)) == 3 and same_bits(again["resonance"], first["resonance"])


@pytest.mark.parametrize("kind", ["torch", "numpy"])
@pytest.mark.parametrize("resume", [True, False])
def test_formatted_datasets_score_like_plain_ones(model_dir, tmp_path, kind, resume):
    dataset = make_math_problems(5, seed=4)
    trainer = make(model_dir, tmp_path, dataset, resonance_resume=resume)
    plain = trainer.score(dataset)
    formatted = trainer.score(dataset.with_format(kind))
    assert formatted.format["type"] == kind
    assert formatted.with_format(None)["resonance_status"] == ["ok"] * 5
    assert same_bits(formatted.with_format(None)["resonance"], plain["resonance"])


def test_zero_rows_come_back_with_the_score_columns(model_dir, tmp_path):
    dataset = make_math_problems(3, seed=1)
    trainer = make(model_dir, tmp_path, dataset, resonance_anatomy=True)
    empty = trainer.score(dataset.select([]))
    full = trainer.score(dataset)
    assert len(empty) == 0 and empty.column_names == full.column_names
    assert empty.features == full.features


def test_a_finished_run_in_a_read_only_folder_reads_back_without_writing(model_dir, tmp_path):
    dataset = make_math_problems(6, seed=5)
    first = make(model_dir, tmp_path, dataset, resonance_batch_size=2).score()
    (folder,) = folders(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    for path in [folder, *folder.iterdir()]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        again = make(model_dir, tmp_path, dataset, resonance_batch_size=2).score()
    finally:
        folder.chmod(0o755)
    assert same_bits(again["resonance"], first["resonance"])
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before, "nothing written"


def test_a_stream_scores_like_the_dataset_and_reads_back_from_parquet(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_source, "WINDOW_ROWS", 8)
    rows = make_math_problems(40, seed=6, flaw_rate=0.5).to_list()
    rows[3]["completion"] = ""  # an unscored row keeps its place
    source = tmp_path / "source.parquet"
    Dataset.from_list(rows).to_parquet(str(source))
    stream = load_dataset("parquet", data_files=str(source), split="train", streaming=True)
    trainer = make(model_dir, tmp_path / "out", make_math_problems(2), resonance_batch_size=3)
    with pytest.warns(UserWarning, match="no resonance score"):
        expected = trainer.score(Dataset.from_list(rows[:30]))
    scored = trainer.score(stream, parts_dir=str(tmp_path / "parts"), max_rows=30)
    assert isinstance(scored, IterableDataset)
    parts = sorted(str(p) for p in (tmp_path / "parts").glob("*.parquet"))
    assert len(parts) == 4  # windows of 8, 8, 8, 6
    back = load_dataset("parquet", data_files=parts, split="train")
    assert back["prompt"] == [r["prompt"] for r in rows[:30]]
    assert (
        back["resonance_status"] == expected["resonance_status"] and back["resonance_status"][3] == "empty_completion"
    )
    assert same_bits(back["resonance"], expected["resonance"])
    assert [r["resonance"] for r in scored] == pytest.approx(list(back["resonance"]), nan_ok=True)


def test_token_budget_batches_stay_within_it_and_match_batch_size_one(model_dir, tmp_path, monkeypatch):
    dataset = make_math_problems(9, seed=5, flaw_rate=0.5)
    one = make(model_dir, tmp_path / "one", dataset, dtype=torch.float64, resonance_batch_size=1).score()
    seen = []
    original = ResonanceScorer.score_batch

    def spy(self, rows, capture):
        seen.append((len(rows), max(len(r["input_ids"]) for r in rows)))
        return original(self, rows, capture)

    monkeypatch.setattr(ResonanceScorer, "score_batch", spy)
    longest = max(len(r) for r in make(model_dir, tmp_path, dataset).prepare_scoring_dataset(dataset)["input_ids"])
    budget = 2 * longest + 1
    budgeted = make(
        model_dir, tmp_path / "budget", dataset, dtype=torch.float64, resonance_batch_size=8,
        resonance_batch_tokens=budget,
    ).score()  # fmt: skip
    assert sum(n for n, _ in seen) == 9 and all(n * length <= budget for n, length in seen)
    assert max(n for n, _ in seen) > 2, "short rows share a batch"
    np.testing.assert_allclose(budgeted["resonance"], one["resonance"], rtol=1e-12, atol=0)

    rows = dataset.to_list()
    rows[4]["completion"] = " ".join(["12 + 30 = 42."] * 40)
    with pytest.raises(RowTooLongError, match=rf"row 4 has \d+ tokens, more than `resonance_batch_tokens`={budget}"):
        make(model_dir, tmp_path / "long", dataset, resonance_batch_tokens=budget).score(Dataset.from_list(rows))


def test_losses_are_the_score_passes_losses_per_input_row(model_dir, tmp_path):
    rows = make_math_problems(5, seed=8).to_list()
    rows[2]["prompt"] = "word " * 400  # truncated away: NaN, 0 tokens
    dataset = Dataset.from_list(rows)
    trainer = make(model_dir, tmp_path, dataset, dtype=torch.float64, max_length=64, resonance_batch_size=2)
    with pytest.warns(UserWarning):
        scored = trainer.score()
    losses, tokens = trainer.losses(dataset)
    assert tokens.tolist() == list(scored["resonance_tokens"]) and tokens[2] == 0
    np.testing.assert_allclose(losses, scored["resonance_loss"], rtol=1e-12, equal_nan=True)


def test_the_summary_line_counts_scored_resumed_and_unscored_rows(model_dir, tmp_path, caplog):
    rows = make_math_problems(6, seed=9).to_list()
    rows[5]["completion"] = "  "
    dataset = Dataset.from_list(rows)
    trainer = make(model_dir, tmp_path, dataset, resonance_batch_size=2)
    with pytest.warns(UserWarning, match="1 of 6 rows"):
        trainer.score()
    (folder,) = folders(tmp_path)
    (folder / "w000000-s00000.done").unlink()  # two rows to redo; the other three come back from their shards
    with caplog.at_level(logging.INFO, logger="resofilter_hf"), pytest.warns(UserWarning):
        trainer.score()
    (line,) = [r.message for r in caplog.records if r.message.startswith("resonance: ")]
    assert line.startswith(
        f"resonance: 6 rows, 5 scored (3 resumed from {folder}), 1 unscored {{'empty_completion': 1}}, "
    )
    assert line.endswith(" s wall")
