"""The story's world: the basic preset's three sets (disjoint, the same questions at any flaw rate) and its base
model (the configured sizes, a tokenizer trained on the basic world's text)."""

from collections import Counter
from dataclasses import replace

import pytest
from transformers import AutoConfig, AutoTokenizer

from resofilter_hf.experiments.story import StorySettings, full_pool_steps, story_reference, what_moved
from resofilter_hf.experiments.story_steps import build_base, make_world


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
        {"column": "resonance", "accuracy": 0.62, "steps": 150},
        {"column": "baseline_random", "accuracy": 0.40, "steps": 150},
        {"column": "baseline_loss", "accuracy": 0.42, "steps": 150},
        {"column": "full", "accuracy": 0.55, "steps": 150},
        {"column": "clean", "accuracy": 0.85, "steps": 150},
    ]
    lines = what_moved(rows, 0.5)
    assert lines[0] == (
        "Flaws: the clean pool trains to 85% accuracy, the full flawed pool to 55%: 30 points below the clean pool."
    )
    assert lines[1] == (
        "Keep 50% by the paper's score (resonance): 62%, 7 points above the full pool, 22 points above random."
    )
    assert lines[2] == "Keep 50% by random: 40%, 15 points below the full pool."
    assert lines[3] == "Keep 50% by loss: 42%, 13 points below the full pool, about the same as random (+2 points)."
    assert lines[4] == "Every run took the same 150 optimizer steps, so a kept half was seen twice as often."
    rows[0]["steps"] = 75
    assert (
        what_moved(rows, 0.5)[4] == "Every run took the same epochs, so smaller selections took fewer steps (75-150)."
    )


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
