"""The story's scoring step with a reference set (alignment columns equal a direct `score(reference=...)`), the
one selection direction per column (sweep, makeup, AUROC, ROC), and the paired differences of retrainings."""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

import resofilter_hf.sweep as sweep
from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.columns import drop_side, flag_values
from resofilter_hf.demo.stats import auroc, roc_curve
from resofilter_hf.demo.story_steps import ALIGNMENT, SCORERS, make_reference, score_columns, score_pool
from resofilter_hf.demo.story_tables import auroc_table, paired_differences, selection_makeup
from resofilter_hf.toy import cached_tiny_model, make_math_problems, make_test_problems


@pytest.fixture(scope="module")
def model_dir():
    return cached_tiny_model(arch="llama")


@pytest.fixture(scope="module")
def pool_and_reference():
    pool = make_math_problems(12, seed=3, flaw_rate=0.5)
    test = make_test_problems(2, seed=3, exclude=pool["prompt"])
    reference = make_reference(6, seed=3, exclude=[*pool["prompt"], *test["prompt"]])
    return pool, reference


def direct_alignment(model_dir, pool, reference, tmp_path, **overrides) -> np.ndarray:
    """`resonance_alignment` as a user gets it: one trainer, `score(reference=...)`."""
    args = ResonanceConfig(
        output_dir=str(tmp_path / "direct"), report_to="none", use_cpu=True, disable_tqdm=True, max_length=256,
        resonance_resume=False, resonance_batch_size=5, **overrides,
    )  # fmt: skip
    trainer = ResonanceTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        args=args,
        train_dataset=pool.select_columns(["prompt", "completion"]),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    return np.asarray(trainer.score(reference=reference)["resonance_alignment"], dtype=np.float64)


def test_alignment_columns_equal_a_direct_score_with_the_reference(model_dir, pool_and_reference, tmp_path):
    pool, reference = pool_and_reference
    scorers = ("resonance", "resonance_sgd", *ALIGNMENT)
    scored = score_pool(model_dir, pool, tmp_path, scorers=scorers, baselines=("loss",), reference=reference)
    assert len(scored) == len(pool) and scored["prompt"] == pool["prompt"] and scored["flaw"] == pool["flaw"]
    assert score_columns(scored)[:4] == list(scorers)
    for column in ALIGNMENT:
        expected = direct_alignment(model_dir, pool, reference, tmp_path / column, **SCORERS[column])
        got = np.asarray(scored[column], dtype=np.float64)
        assert np.all(np.abs(got) <= 1 + 1e-9) and np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9, err_msg=column)
    # the raw-gradient pass is its own pass: its values are not the paper transform's
    assert not np.allclose(scored["resonance_alignment"], scored["resonance_alignment_grad"])
    # the paper's column is untouched by the reference riding along in its pass
    plain = score_pool(model_dir, pool, tmp_path / "plain", scorers=("resonance",), baselines=("loss",))
    np.testing.assert_allclose(scored["resonance"], plain["resonance"], rtol=1e-12)
    assert "resonance_alignment" not in plain.column_names


def test_alignment_needs_a_reference_and_default_scorers_follow_it(model_dir, pool_and_reference, tmp_path):
    pool, reference = pool_and_reference
    with pytest.raises(ValueError, match=r"scorer\(s\) \['resonance_alignment_grad'\] need a `reference` set"):
        score_pool(model_dir, pool, tmp_path, scorers=("resonance", "resonance_alignment_grad"))
    with pytest.raises(ValueError, match=r"unknown scorer\(s\) \['alignment'\]"):
        score_pool(model_dir, pool, tmp_path, scorers=("alignment",), reference=reference)
    questions = {q.rstrip("\n") for q in pool["prompt"]}
    assert len(reference) == 6 and not questions & {q.rstrip("\n") for q in reference["prompt"]}
    assert set(reference["flaw"]) == {"none"}
    reduced = make_reference(6, seed=3, exclude=reference["prompt"][:2])
    assert len(reduced) == 6 and reduced["prompt"][:4] == reference["prompt"][2:]
    assert not set(reduced["prompt"]) & set(reference["prompt"][:2])
    basic = make_reference(4, seed=3, level="basic")
    assert basic["prompt"] == make_test_problems(4, seed=30_003, level="basic")["prompt"] != reference["prompt"][:4]


def test_one_direction_per_column():
    assert set(ALIGNMENT) <= set(SCORERS)  # every alignment column is scored
    assert [drop_side(c) for c in ("resonance", "baseline_loss", *ALIGNMENT)] == [
        "highest",
        "highest",
        "lowest",
        "lowest",
    ]
    np.testing.assert_array_equal(flag_values([0.2, -0.5], "resonance_alignment"), [-0.2, 0.5])
    np.testing.assert_array_equal(flag_values([0.2, -0.5], "resonance"), [0.2, -0.5])


def direction_table() -> Dataset:
    """Alignment that is lowest on the flawed rows, and a copy of it under a high-flagged name."""
    values = [0.9, -0.8, 0.7, -0.6, 0.5, 0.4, -0.3, 0.35]
    flaws = ["none", "truncated", "none", "off_topic", "none", "none", "truncated", "none"]
    prompts = [f"q{k}\n" for k in range(8)]
    return Dataset.from_dict(
        {"prompt": prompts, "completion": ["a"] * 8, "flaw": flaws, "resonance_alignment": values, "copy": values}
    )


def test_makeup_auroc_and_roc_read_alignment_from_its_low_end():
    table = direction_table()
    by_alignment, by_copy = selection_makeup(table, ["resonance_alignment", "copy"], keep=0.5)
    assert by_alignment["flawed_share_kept"] == 0.0  # the three flawed rows hold the lowest alignments
    assert by_copy["flawed_share_kept"] == 0.75  # the same numbers read as high = flagged keep three of them
    rows = {(r["scorer"], r["flaw"]): r["auroc"] for r in auroc_table(table, ["resonance_alignment", "copy"])}
    flawed = np.asarray(table["flaw"]) != "none"
    assert rows[("resonance_alignment", "any")] == 1.0 == auroc(-np.asarray(table["copy"]), flawed)
    assert rows[("copy", "any")] == 0.0
    fpr, tpr = roc_curve(flag_values(table["resonance_alignment"], "resonance_alignment"), flawed)
    assert tpr[np.argmax(fpr > 0)] == 1.0  # every flawed row comes before the first clean one


def test_paired_differences_against_a_hand_computed_table():
    runs = [
        {"column": "full", "keep": 1.0, "seed": 0, "accuracy": 0.50, "heldout_loss": 1.0},
        {"column": "full", "keep": 1.0, "seed": 1, "accuracy": 0.40, "heldout_loss": 1.2},
        {"column": "baseline_random", "keep": 0.5, "seed": 0, "accuracy": 0.30, "heldout_loss": 1.5},
        {"column": "baseline_random", "keep": 0.5, "seed": 1, "accuracy": 0.20, "heldout_loss": 1.6},
        {"column": "resonance", "keep": 0.5, "seed": 0, "accuracy": 0.45, "heldout_loss": 1.1},
        {"column": "resonance", "keep": 0.5, "seed": 1, "accuracy": 0.60, "heldout_loss": 0.9},
        {"column": "resonance", "keep": 0.25, "seed": 1, "accuracy": 0.10, "heldout_loss": 2.0},
        {"column": "resonance", "keep": 0.5, "seed": 2, "accuracy": 0.70, "heldout_loss": 0.5},  # no partner
    ]
    metrics = ("accuracy", "heldout_loss")
    vs_full = paired_differences(runs, "full", metrics, same_keep=False)
    expected_full = [
        ("baseline_random", 0.5, 0, -0.20, 0.5),
        ("baseline_random", 0.5, 1, -0.20, 0.4),
        ("resonance", 0.5, 0, -0.05, 0.1),
        ("resonance", 0.5, 1, 0.20, -0.3),
        ("resonance", 0.25, 1, -0.30, 0.8),
    ]
    assert [(r["column"], r["keep"], r["seed"]) for r in vs_full] == [e[:3] for e in expected_full]
    np.testing.assert_allclose(
        [[r["d_accuracy"], r["d_heldout_loss"]] for r in vs_full], [e[3:] for e in expected_full]
    )
    vs_random = paired_differences(runs, "baseline_random", metrics, same_keep=True)
    assert [(r["column"], r["keep"], r["seed"]) for r in vs_random] == [("resonance", 0.5, 0), ("resonance", 0.5, 1)]
    np.testing.assert_allclose(
        [[r["d_accuracy"], r["d_heldout_loss"]] for r in vs_random], [[0.15, -0.4], [0.4, -0.7]]
    )
    summary = sweep.summarize(vs_random, ("column", "keep"), ("d_accuracy",))[0]
    assert summary["d_accuracy_mean"] == pytest.approx(0.275) and summary["n_runs"] == 2
    assert summary["d_accuracy_std"] == pytest.approx(math.sqrt(2) * 0.125)
    with pytest.raises(ValueError, match=r"two runs of 'full' for seed/keep \(0, None\)"):
        paired_differences([*runs, runs[0]], "full", metrics, same_keep=False)
