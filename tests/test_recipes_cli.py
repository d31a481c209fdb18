"""The recipes parse into TRL's and our dataclasses, and the toy ones run end to end through the CLI."""

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from resofilter_hf import jobs
from resofilter_hf.cli import main
from resofilter_hf.provenance import load_scored, read_provenance


RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
CPU = ["--use_cpu", "true", "--bf16", "false"]  # GPU recipes are parsed here, not run


def test_there_are_recipes():
    assert {p.parent.name for p in RECIPES} >= {"toy", "metamathqa", "gsm8k"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_parses_into_the_dataclasses(recipe, tmp_path):
    data_args, training_args, model_args = jobs.parse(["--config", str(recipe), *CPU, "--output_dir", str(tmp_path)])
    config = yaml.safe_load(recipe.read_text())
    assert model_args.model_name_or_path == config["model_name_or_path"]
    assert data_args.dataset_name == config["dataset_name"]
    for key, value in config.items():  # every key landed somewhere, with its value
        owner = next(a for a in (data_args, training_args, model_args) if hasattr(a, key))
        if key not in ("output_dir", "use_cpu", "bf16", "dtype", "report_to"):  # set by CPU above, or normalised
            assert getattr(owner, key) == value or str(getattr(owner, key)) == str(value), key


def test_unknown_recipe_key_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: toy:llama\nresonance_lr_typo: 1.0\n")
    with pytest.raises(ValueError, match="resonance_lr_typo"):
        jobs.parse(["--config", str(bad), *CPU])


def _pairwise_auroc(scores, flawed) -> float:
    """P(a flawed row scores above a clean one), ties counted half: every pair, no ranking shortcut."""
    scores, flawed = np.asarray(scores, dtype=np.float64), np.asarray(flawed, dtype=bool)
    diff = scores[flawed][:, None] - scores[~flawed][None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def test_toy_recipes_score_select_train_through_the_cli(tmp_path, capsys):
    """The toy recipes as written (only the paths moved): the warmed model's scores find the flawed rows as the
    demo's do (the demo's seed-0 pool, AUROC 0.80 there), and the kept half holds fewer of them than chance."""
    recipes = Path(__file__).resolve().parents[1] / "recipes" / "toy"
    scored, kept = tmp_path / "scored.parquet", tmp_path / "keep50.parquet"
    assert main(["score", "--config", str(recipes / "score.yaml"), "--disable_tqdm", "true",
                 "--output_dir", str(tmp_path), "--scores_path", str(scored)]) == 0  # fmt: skip
    table = load_scored(scored)
    flawed = np.array(table["flaw"]) != "none"
    assert len(table) == 800 and flawed.sum() == 240 and np.isfinite(table["resonance"]).all()
    assert read_provenance(table)["scoring"]["lr"] == 1e-5
    assert (tmp_path / "toy-llama-warm-seed0" / "config.json").is_file()
    assert _pairwise_auroc(table["resonance"], flawed) > 0.75  # an untrained toy:llama gives about 0.5

    assert main(["select", str(scored), str(kept), "--keep", "0.5"]) == 0
    assert "kept 400 of 800 rows" in capsys.readouterr().out
    selected = load_scored(kept)
    assert len(selected) == 400 and read_provenance(selected)["selection"]["keep"] == 0.5
    assert (np.array(selected["flaw"]) != "none").sum() / 240 < 0.35  # chance keeps half of the flawed rows

    out = tmp_path / "sft"
    assert main(["train", "--config", str(recipes / "train_keep50.yaml"), "--dataset_name", str(kept),
                 "--output_dir", str(out), "--max_steps", "2", "--max_rows", "24",
                 "--disable_tqdm", "true"]) == 0  # fmt: skip
    assert (out / "model.safetensors").is_file()
    trained_scores = load_scored(out / "resonance_scores.parquet")
    assert len(trained_scores) == 24 and "resonance_epoch0" in trained_scores.column_names


def test_select_reports_bad_options_without_a_traceback(tmp_path, capsys):
    scored = tmp_path / "s.parquet"
    from datasets import Dataset

    from resofilter_hf.provenance import write_parquet

    write_parquet(Dataset.from_dict({"prompt": ["a", "b"], "completion": ["x", "y"], "score": [1.0, 2.0]}), scored)
    assert main(["select", str(scored), str(tmp_path / "o.parquet"), "--keep", "0.5"]) == 1
    assert "resonance" in capsys.readouterr().err  # the missing column is named


def test_score_streaming_writes_parquet_parts_that_read_back(tmp_path):
    """`resofilter score --streaming` as a user runs it (a subprocess), from a local parquet file."""
    import subprocess
    import sys

    from datasets import load_dataset

    from resofilter_hf.toy import make_math_problems

    source = tmp_path / "pool.parquet"
    make_math_problems(20, seed=3, flaw_rate=0.3).to_parquet(str(source))
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "toy" / "score.yaml"
    common = ["--config", str(recipe), "--dataset_name", str(source), "--max_rows", "14", "--disable_tqdm", "true"]
    cli = [sys.executable, "-m", "resofilter_hf.cli", "score", *common]
    import torch

    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}  # as this process: the warmed toy model is built alike
    streamed = subprocess.run(
        [*cli, "--streaming", "--output_dir", str(tmp_path / "s"), "--scores_path", str(tmp_path / "parts")],
        capture_output=True, text=True, timeout=300, env={**os.environ, **threads},
    )  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert f"scored rows written to {tmp_path / 'parts'} (1 parquet parts)" in streamed.stdout
    back = load_dataset("parquet", data_files=str(tmp_path / "parts" / "*.parquet"), split="train")
    assert (
        main(["score", *common, "--output_dir", str(tmp_path / "d"), "--scores_path", str(tmp_path / "d.parquet")])
        == 0
    )
    whole = load_scored(tmp_path / "d.parquet")
    assert len(back) == len(whole) == 14 and back["prompt"] == whole["prompt"]
    np.testing.assert_array_equal(back["resonance"], whole["resonance"])
    assert back["resonance_status"] == whole["resonance_status"]
