"""The story's world: the basic preset's three sets (disjoint, the same questions at any flaw rate) and its base
model (the configured sizes, a tokenizer trained on the basic world's text)."""

from collections import Counter
from dataclasses import replace

import pytest
from transformers import AutoConfig, AutoTokenizer

from resofilter_hf.demo.story import (
    StorySettings,
    full_pool_steps,
    noise_band,
    run_story,
    story_reference,
    what_moved,
)
from resofilter_hf.demo.story_steps import build_base, clean_pool, make_world


@pytest.fixture(scope="module")
def world():
    return make_world(StorySettings.basic(), seed=4)


def test_basic_world_sets_are_disjoint_and_labelled(world):
    settings = StorySettings.basic()
    warm, pool, test = world
    assert len(pool) == settings.n_pool and len(test) == settings.n_test
    assert 0 < len(warm) <= settings.n_warmup  # warm-up questions that are also in the pool are dropped
    assert not set(warm["prompt"]) & set(pool["prompt"]) and not set(test["prompt"]) & {
        *pool["prompt"],
        *warm["prompt"],
    }
    counts = Counter(pool["flaw"])
    assert counts["none"] == settings.n_pool - round(settings.n_pool * settings.flaw_rate)
    assert set(warm["flaw"]) == set(test["flaw"]) == {"none"}
    assert all(p.count("\n") == 1 and len(p) < 140 for p in pool["prompt"])  # short basic questions


def test_clean_arm_holds_the_same_questions(world):
    warm, pool, test = world
    c_warm, c_pool, c_test = make_world(replace(StorySettings.basic(), flaw_rate=0.0), seed=4)
    assert c_pool["prompt"] == pool["prompt"] and c_pool["answer"] == pool["answer"]
    assert c_warm["prompt"] == warm["prompt"] and c_test["prompt"] == test["prompt"]
    assert set(c_pool["flaw"]) == {"none"}
    assert [c for c, f in zip(c_pool["completion"], pool["flaw"]) if f == "none"] == [
        c for c, f in zip(pool["completion"], pool["flaw"]) if f == "none"
    ]
    assert make_world(StorySettings.basic(), seed=5)[1]["prompt"] != pool["prompt"]


def test_clean_pool_is_the_pools_questions_with_correct_solutions_or_refused(world):
    _, pool, _ = world
    clean = clean_pool(StorySettings.basic(), 4, pool)
    assert clean["prompt"] == pool["prompt"] and set(clean["flaw"]) == {"none"}
    flawed = [i for i, f in enumerate(pool["flaw"]) if f != "none"]
    assert flawed and all(clean["completion"][i] != pool["completion"][i] for i in flawed)
    with pytest.raises(ValueError, match="does not hold the pool's questions"):
        clean_pool(StorySettings.basic(), 5, pool)  # another seed's world: other questions


def test_base_model_has_the_configured_sizes_and_a_basic_tokenizer(tmp_path, world):
    settings = StorySettings.basic()
    folder = build_base(settings, seed=0, folder=tmp_path / "base")
    config = AutoConfig.from_pretrained(folder)
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (3, 96, 192)
    tok = AutoTokenizer.from_pretrained(folder)
    _, pool, _ = world
    text = pool["prompt"][0] + pool["completion"][0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == text
    gsm_tok = AutoTokenizer.from_pretrained(build_base(StorySettings(), seed=0, folder=tmp_path / "gsm"))
    assert len(ids) < len(gsm_tok(text, add_special_tokens=False)["input_ids"])  # trained on the basic world's text


def test_what_moved_says_what_the_flaws_cost_and_what_each_selection_wins_back():
    rows = [
        {"column": "resonance", "accuracy": 0.62, "steps": 150, "n_test": 200},
        {"column": "baseline_random", "accuracy": 0.40, "steps": 150, "n_test": 200},
        {"column": "baseline_loss", "accuracy": 0.42, "steps": 150, "n_test": 200},
        {"column": "full", "accuracy": 0.55, "steps": 150, "n_test": 200},
        {"column": "clean", "accuracy": 0.85, "steps": 150, "n_test": 200},
    ]
    lines = what_moved(rows, 0.5)
    assert lines[0] == (
        "Flaws: the clean pool trains to 85% accuracy, the full flawed pool to 55%: 30 points below the clean pool."
    )
    # 0.62 vs 0.55 on 200 problems, one success and one failure added to each: 125/202 and 111/202
    p, q = 125 / 202, 111 / 202
    assert noise_band(0.62, 0.55, 200) == pytest.approx(2 * (p * (1 - p) / 202 + q * (1 - q) / 202) ** 0.5)
    assert noise_band(0.62, 0.55, 200) == pytest.approx(0.0978, abs=1e-4)
    assert noise_band(0.0, 0.0, 8) == pytest.approx(2 * (2 * 0.1 * 0.9 / 10) ** 0.5)  # 0% on 8 problems: still noisy
    assert lines[1] == (
        "Keep 50% by the paper's score (resonance): 62%, within the test set's noise of the full pool "
        "(+7 points, noise +-10), 22 points above random."
    )
    assert lines[2] == "Keep 50% by random: 40%, 15 points below the full pool."
    assert lines[3] == (
        "Keep 50% by loss: 42%, 13 points below the full pool, within the test set's noise of random "
        "(+2 points, noise +-10)."
    )
    assert lines[4] == (
        "Every run took the same 150 optimizer steps, so each kept row was seen about 2 times as often as in the "
        "full pool."
    )
    assert (
        lines[5].startswith("This is one seed on 200 test problems:")
        and "no difference here shows an effect" in lines[5]
    )
    assert what_moved(rows, 0.25)[4].startswith(
        "Every run took the same 150 optimizer steps, so each kept row was seen about 4 times"
    )
    rows[0]["steps"] = 75
    assert (
        what_moved(rows, 0.5)[4] == "Every run took the same epochs, so smaller selections took fewer steps (75-150)."
    )
    wide = [{**row, "n_test": 20_000} for row in rows]  # a test set big enough that 7 points are beyond its noise
    assert "62%, 7 points above the full pool" in what_moved(wide, 0.5)[1]


def test_equal_steps_is_the_full_pool_step_count():
    settings = StorySettings.basic()
    assert settings.equal_steps and full_pool_steps(settings) == 150  # 800 rows / batch 16 x 3 epochs
    assert full_pool_steps(replace(settings, n_pool=801)) == 153  # the last, partial batch is a step


def test_the_reference_set_is_clean_disjoint_and_required_by_alignment(world):
    _, pool, test = world
    settings = StorySettings.basic()
    reference = story_reference(settings, 4, pool, test)
    assert len(reference) == settings.n_reference and set(reference["flaw"]) == {"none"}
    assert not set(reference["prompt"]) & {*pool["prompt"], *test["prompt"]}
    no_alignment = replace(settings, n_reference=0, scorers=("resonance", "resonance_sgd"))
    assert story_reference(no_alignment, 4, pool, test) is None
    message = r"StorySettings: scorer\(s\) \['resonance_alignment'\] need a reference set: set n_reference > 0"
    with pytest.raises(ValueError, match=message):
        story_reference(replace(settings, n_reference=0), 4, pool, test)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"level": "hard"}, r"StorySettings: level must be one of \['basic', 'gsm'\], got 'hard'"),
        ({"n_pool": 0}, "StorySettings: n_pool must be >= 1, got 0"),
        ({"n_test": 0}, "StorySettings: n_test must be >= 1, got 0"),
        ({"n_warmup": -3}, "StorySettings: n_warmup must be >= 1, got -3"),
        ({"n_reference": -1}, "StorySettings: n_reference must be >= 0"),
        ({"flaw_rate": 1.5}, r"StorySettings: flaw_rate must be in \[0, 1\], got 1.5"),
        ({"keep": 0}, r"StorySettings: keep must be in \(0, 1\], got 0"),
    ],
)
def test_settings_out_of_range_are_refused_by_field(change, message):
    with pytest.raises(ValueError, match=message):
        replace(StorySettings.basic(), **change)


def test_a_pool_too_small_for_both_classes_is_refused_before_any_work(tmp_path):
    replace(StorySettings.quick(), n_pool=3).check_pool()  # 3 rows at 0.3: 1 flawed, 2 clean
    message = r"StorySettings: n_pool=1 at flaw_rate=0.3 gives 0 flawed of 1 rows; the story needs both"
    with pytest.raises(ValueError, match=message):
        run_story(tmp_path / "out", settings=replace(StorySettings.quick(), n_pool=1))
    with pytest.raises(ValueError, match="gives 4 flawed of 4 rows"):
        run_story(tmp_path / "out", settings=replace(StorySettings.quick(), n_pool=4, flaw_rate=1.0))
    assert not (tmp_path / "out").exists()
