"""Cross-model comparison: agreement statistics by hand, row accounting of every arm, one seed end to end."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from transformers import AutoTokenizer

import resofilter_hf.demo.story_steps as story_steps
import resofilter_hf.sweep as sweep
from resofilter_hf.demo.story import StorySettings, full_pool_steps, retraining_proxy
from resofilter_hf.demo.story_steps import make_world

from lab.cross_model import (
    CrossModelSettings,
    ModelSpec,
    agreement,
    chance_jaccard,
    jaccard,
    kept_rows,
    run_cross_model_seed,
    warmed_model,
)


def test_jaccard_by_hand_and_chance_level_by_simulation():
    assert jaccard([0, 1, 2, 3], [2, 3, 4]) == pytest.approx(2 / 5)
    assert jaccard({1}, {1}) == 1.0 and jaccard({1}, {2}) == 0.0 and math.isnan(jaccard([], []))
    assert chance_jaccard(0.5) == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    n = 2000
    for keep in (0.25, 0.5, 0.75):
        k = math.ceil(n * keep)
        draws = [jaccard(rng.choice(n, k, replace=False), rng.choice(n, k, replace=False)) for _ in range(200)]
        assert np.mean(draws) == pytest.approx(chance_jaccard(keep), abs=0.005), keep


def _scored(values, column="resonance"):
    n = len(values)
    return Dataset.from_dict({"prompt": [f"q{i}\n" for i in range(n)], "flaw": ["none"] * n, column: values})


def test_agreement_by_hand():
    # 8 rows; keep 50% drops the 4 highest. A keeps rows {0,1,2,3}; B's scores put rows 3 and 4 in each other's place
    a = _scored([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    b = _scored([0.1, 0.2, 0.3, 0.5, 0.4, 0.6, 0.7, 0.8])
    row = agreement(a, b, "resonance", 0.5)
    assert kept_rows(a, "resonance", 0.5) == [0, 1, 2, 3] and kept_rows(b, "resonance", 0.5) == [0, 1, 2, 4]
    assert (row["n_kept_a"], row["n_kept_b"], row["n_kept_both"]) == (4, 4, 3)
    assert row["jaccard"] == pytest.approx(3 / 5)
    # ranks differ by one at two rows: rho = 1 - 6 * 2 / (8 * 63)
    assert row["spearman"] == pytest.approx(1 - 12 / 504)
    assert row["chance_jaccard"] == pytest.approx(1 / 3)
    # the alignment score is suspicious when LOW: its lowest half goes
    low = _scored([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], column="resonance_alignment")
    assert kept_rows(low, "resonance_alignment", 0.5) == [4, 5, 6, 7]
    reversed_ = _scored([0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1], column="resonance_alignment")
    row = agreement(low, reversed_, "resonance_alignment", 0.5)
    assert row["jaccard"] == 0.0 and row["spearman"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match=r"differ in length \(8 vs 7\)"):
        agreement(a, _scored([0.1] * 7), "resonance", 0.5)


TINY = sweep.ProxySettings(max_steps=2, batch_size=4, max_new_tokens=16, eval_batch_size=16)
SETTINGS = CrossModelSettings(
    story=replace(StorySettings.quick(), n_pool=20, warmup=TINY, proxy=TINY),
    model_b=ModelSpec(arch="qwen2", num_layers=3, hidden_size=32, intermediate_size=96, num_heads=2, num_kv_heads=1),
    n_reference=8,
)


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    """One seed at toy size, recording every training set (prompts, completions) in call order."""
    work = tmp_path_factory.mktemp("cross")
    trained = []
    real = sweep.train_proxy

    def recording(model_dir, train_dataset, settings, **kwargs):
        trained.append((Path(model_dir), list(zip(train_dataset["prompt"], train_dataset["completion"]))))
        return real(model_dir, train_dataset, settings, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep, "train_proxy", recording)  # the retrainings
        patch.setattr(story_steps, "train_proxy", recording)  # the warm-ups
        result = run_cross_model_seed(3, SETTINGS, work)
    return work, result, trained


def test_seed_row_accounting(seed_run):
    work, result, trained = seed_run
    _, pool, test = make_world(SETTINGS.story, 3)
    n, keep = len(pool), SETTINGS.story.keep
    rows = lambda ds: list(zip(ds["prompt"], ds["completion"]))  # noqa: E731
    scored = {m: Dataset.from_parquet(str(work / m / "scored.parquet")) for m in ("a", "b")}
    warmups, retrains = trained[:2], trained[2:]
    assert [p.parent.name for p, _ in warmups] == ["a", "b"]  # base-model folders under work/a, work/b
    assert all(p == work / "b" / "warm-model" for p, _ in retrains)  # every arm retrains B from its warm-up
    runs = {(r["arm"], r["score"], r["model"]): r for r in result["runs"]}
    random_half, full, clean = (runs[(arm, None, "b")] for arm in ("random", "full", "clean"))
    expected = {"random": kept_rows(scored["a"], "baseline_random", keep)}
    for score in ("resonance", "resonance_alignment"):
        expected[("own", score)] = kept_rows(scored["b"], score, keep)
        expected[("a", score)] = kept_rows(scored["a"], score, keep)
    # alignment drops its lowest rows: every kept row scores at least as high as every dropped one
    aligned = np.asarray(scored["a"]["resonance_alignment"])
    dropped = sorted(set(range(n)) - set(expected[("a", "resonance_alignment")]))
    assert aligned[expected[("a", "resonance_alignment")]].min() >= aligned[dropped].max()
    for ids in expected.values():
        assert len(ids) == len(set(ids)) == math.ceil(n * keep) and set(ids) <= set(range(n))
    by_set = {tuple(s) for _, s in retrains}
    for arm, ids in expected.items():
        assert tuple(rows(pool.select(ids))) in by_set, arm
    assert tuple(rows(pool)) in by_set  # the full pool
    (clean_set,) = [s for s in by_set if len(s) == n and s != tuple(rows(pool))]
    assert [p for p, _ in clean_set] == pool["prompt"]  # the clean pool: the same questions, all solutions right
    assert len(retrains) == len({tuple(s) for _, s in retrains})  # one training per distinct set
    for key, ids in expected.items():
        run = random_half if key == "random" else runs[(*key, "b")]
        assert run["n_train"] == len(ids) and run["n_test"] == len(test)
        assert run["flawed_share"] == pytest.approx(np.mean([pool["flaw"][i] != "none" for i in ids]))
    assert full["n_train"] == clean["n_train"] == n and clean["flawed_share"] == 0.0
    assert full["flawed_share"] == pytest.approx(1 - result["flaw_counts"]["none"] / n)
    for row in result["agreement"][:2]:
        own, from_a = expected[("own", row["column"])], expected[("a", row["column"])]
        assert row["n_kept_both"] == len(set(own) & set(from_a))
        assert row["jaccard"] == pytest.approx(len(set(own) & set(from_a)) / len(set(own) | set(from_a)))


def test_seed_result_shape_and_models(seed_run):
    work, result, _ = seed_run
    assert set(result) == {"seed", "n", "flaw_counts", "models", "agreement", "auroc", "runs", "paired", "timings_s"}
    assert [r["column"] for r in result["agreement"]] == ["resonance", "resonance_alignment", "baseline_loss"]
    assert result["n"]["reference"] == 8 and len(result["auroc"]) == 2 * 3
    assert sorted((r["model"], r["arm"], r["score"] or "") for r in result["runs"]) == sorted(
        [("b", arm, s) for arm in ("own", "a") for s in ("resonance", "resonance_alignment")]
        + [("b", arm, "") for arm in ("random", "full", "clean")]
        + [("a", "warm", ""), ("b", "warm", "")]
    )
    for run in result["runs"]:
        assert math.isfinite(run["heldout_loss"]) and 0 <= run["accuracy"] <= 1
    assert [p["score"] for p in result["paired"]] == ["resonance", "resonance_alignment"]
    paired = result["paired"][0]
    runs = {(r["arm"], r["model"]): r for r in result["runs"] if r["score"] in ("resonance", None)}
    assert paired["accuracy_own_minus_a"] == runs[("own", "b")]["accuracy"] - runs[("a", "b")]["accuracy"]
    assert paired["heldout_loss_a_minus_random"] == pytest.approx(
        runs[("a", "b")]["heldout_loss"] - runs[("random", "b")]["heldout_loss"]
    )
    config = {m: json.loads((work / m / "warm-model" / "config.json").read_text()) for m in ("a", "b")}
    assert (config["a"]["model_type"], config["b"]["model_type"]) == ("llama", "qwen2")
    assert config["b"]["hidden_size"] == 32 and result["models"]["b"]["arch"] == "qwen2"
    assert result["models"]["a"]["parameters"] > result["models"]["b"]["parameters"] > 0
    tokenizers = [AutoTokenizer.from_pretrained(work / m / "warm-model") for m in ("a", "b")]
    assert tokenizers[0].get_vocab() == tokenizers[1].get_vocab()  # one toy tokenizer for both
    text = make_world(SETTINGS.story, 3)[1][0]
    text = text["prompt"] + text["completion"]
    assert tokenizers[0](text)["input_ids"] == tokenizers[1](text)["input_ids"]
    json.dumps(result, default=str)


def test_warmed_model_is_reused(seed_run):
    work, _, _ = seed_run

    def build(folder):
        raise AssertionError("a warmed model already there must not be rebuilt")

    assert warmed_model("b", build, None, SETTINGS, 3, work) == work / "b" / "warm-model"


def test_equal_steps_trains_every_arm_for_the_full_pools_steps(seed_run, tmp_path):
    """Epoch-based retraining: 20 pool rows at batch 4 are 5 steps, a kept half of 10 rows 3; with `equal_steps`
    every arm runs the full pool's 5 (read from each trainer's state). Warm-up and scoring are reused."""
    work, _, _ = seed_run
    epochs = replace(TINY, max_steps=-1, epochs=1.0)
    recorded: list[tuple[int, int, int]] = []  # (rows, trainer.state.max_steps, trainer.state.global_step)
    real = sweep.train_proxy

    def recording(model_dir, train_dataset, settings, **kwargs):
        trainer = real(model_dir, train_dataset, settings, **kwargs)
        recorded.append((len(train_dataset), trainer.state.max_steps, trainer.state.global_step))
        return trainer

    steps = {}
    for equal in (False, True):
        story = replace(SETTINGS.story, proxy=epochs, equal_steps=equal)
        folder = tmp_path / f"equal-{equal}"
        for model in ("a", "b"):  # warmed models and scored pools: nothing but the retraining runs again
            shutil.copytree(work / model, folder / model)
        recorded.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sweep, "train_proxy", recording)
            result = run_cross_model_seed(3, replace(SETTINGS, story=story), folder)
        runs = [r for r in result["runs"] if r["arm"] != "warm"]
        assert len(runs) == 7 and recorded
        assert {(r["n_train"], r["steps"]) for r in runs} == {(n, done) for n, _, done in recorded}
        assert all(mx == done for _, mx, done in recorded)  # every training ran to its planned end
        assert [r["steps"] for r in result["runs"] if r["arm"] == "warm"] == [0, 0]
        steps[equal] = {(r["arm"], r["score"]): (r["n_train"], r["steps"]) for r in runs}
        steps[equal, "trainers"] = sorted(recorded)
    assert full_pool_steps(replace(SETTINGS.story, proxy=epochs)) == 5
    halves = [key for key, (n, _) in steps[False].items() if n == 10]
    assert len(halves) == 5 and {steps[False][k] for k in halves} == {(10, 3)}  # equal epochs: half the rows, 3 steps
    assert steps[False][("full", None)] == steps[False][("clean", None)] == (20, 5)
    assert set(steps[True].values()) == {(10, 5), (20, 5)}  # equal steps: every arm 5
    assert {mx for _, mx, _ in steps[True, "trainers"]} == {5} and {mx for _, mx, _ in steps[False, "trainers"]} == {
        3,
        5,
    }
    assert retraining_proxy(replace(SETTINGS.story, equal_steps=True)).max_steps == TINY.max_steps  # explicit wins
