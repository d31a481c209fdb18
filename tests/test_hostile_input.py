"""Hostile but realistic input through the public API: every bad row named, every NaN explained, no user column
overwritten, no model with NaN weights scored, every cut row flagged."""

import math
import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.toy import cached_tiny_model, make_math_problems


MODEL_DIR = cached_tiny_model(arch="llama")
QUIET = {"report_to": "none", "use_cpu": True, "bf16": False, "disable_tqdm": True}


def make(dataset, tmp_path, model=None, **options) -> ResonanceTrainer:
    """A trainer on the tiny Llama (float32, a fresh copy unless `model` is given) with `options` set."""
    return ResonanceTrainer(
        model or AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32),
        ResonanceConfig(str(tmp_path), **QUIET, **options),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(MODEL_DIR),
    )


# ---- empty rows, bad train rows ------------------------------------------------------------------------------


def test_empty_and_whitespace_text_rows_get_a_status_not_a_score(tmp_path):
    texts = ["Question: 2 + 2? Answer: 4", "", "   \n ", "Question: 3 + 1? Answer: 4"]
    trainer = make(Dataset.from_dict({"text": texts}), tmp_path, resonance_resume=False)
    with pytest.warns(UserWarning, match=r"2 of 4 rows have no resonance score .*'empty_text': 2"):
        scored = trainer.score()
    assert scored["resonance_status"] == ["ok", "empty_text", "empty_text", "ok"]
    values = np.array(scored["resonance"])
    assert np.isfinite(values[[0, 3]]).all() and np.isnan(values[[1, 2]]).all()
    assert scored["resonance_tokens"] == [scored["resonance_tokens"][0], 0, 0, scored["resonance_tokens"][3]]


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"prompt": ["2 + 2?", "3 + 1?"], "completion": ["4", None]}, r"row 1: .*`completion` is None"),
        ({"prompt": [1, 2], "completion": ["4", "4"]}, r"row 0: .*`prompt` is 1"),
        ({"prompt": [], "completion": []}, r"`train_dataset` has 0 rows"),
    ],
    ids=["none-completion", "int-prompt", "zero-rows"],
)
def test_bad_train_rows_fail_at_construction_naming_row_and_field(tmp_path, columns, message):
    # an SFTConfig and a model path, as users call it; TRL's preparation would crash with no row index
    # (AttributeError on None.endswith, a bare StopIteration for 0 rows)
    args = SFTConfig(str(tmp_path), report_to="none", use_cpu=True, bf16=False)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    with pytest.raises(ValueError, match=message):
        ResonanceTrainer(str(MODEL_DIR), args, train_dataset=Dataset.from_dict(columns), processing_class=tokenizer)


# ---- the user's columns ------------------------------------------------------------------------------------


def test_score_column_never_overwrites_a_user_column(tmp_path):
    dataset = make_math_problems(3, seed=1)
    assert "answer" in dataset.column_names
    trainer = make(dataset, tmp_path, resonance_column="answer", resonance_resume=False)
    with pytest.raises(ValueError, match=r"`resonance_column='answer'` is already a column of the dataset"):
        trainer.score()
    assert trainer.train_dataset is not None  # nothing else broke


def test_rescoring_replaces_earlier_results_with_a_warning(tmp_path):
    dataset = make_math_problems(3, seed=1)
    trainer = make(dataset, tmp_path, resonance_resume=False)
    first = trainer.score()
    with pytest.warns(UserWarning, match=r"already has result columns \['resonance', 'resonance_loss'"):
        again = trainer.score(first)
    assert again.column_names == first.column_names
    np.testing.assert_array_equal(again["resonance"], first["resonance"])
    assert again["answer"] == dataset["answer"]


# ---- non-finite models, settings and rows ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tensor", ["model.layers.0.mlp.down_proj.weight", "model.embed_tokens.weight", "model.rotary_emb.inv_freq"]
)
def test_model_with_nonfinite_weights_is_refused_before_scoring(tmp_path, tensor):
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32)
    bad = dict([*model.named_parameters(), *model.named_buffers()])[tensor]
    with torch.no_grad():
        bad.view(-1)[3] = math.nan if "weight" in tensor else math.inf
    trainer = make(make_math_problems(2, seed=1), tmp_path, model=model, resonance_resume=False)
    with pytest.raises(ValueError, match=rf"non-finite weights: {tensor} holds 1 NaN/inf entries"):
        trainer.score()


@pytest.mark.parametrize(
    "field, value",
    [
        ("resonance_weight_decay", math.nan),
        ("resonance_lr", math.inf),
        ("resonance_eps", -math.inf),
        ("resonance_betas", [math.nan, 0.999]),
        ("resonance_last_n_layers", 2.5),
        ("resonance_batch_size", 2.5),
        ("resonance_lr", True),
    ],
)
def test_nonfinite_or_non_integer_settings_are_refused(tmp_path, field, value):
    with pytest.raises(ValueError, match=rf"`{field}` must be"):
        ResonanceConfig(str(tmp_path), report_to="none", use_cpu=True, **{field: value})


def test_last_n_layers_beyond_the_model_names_its_layer_count(tmp_path):
    trainer = make(make_math_problems(2, seed=1), tmp_path, resonance_last_n_layers=99)  # targets found lazily
    with pytest.raises(ValueError, match=r"`resonance_last_n_layers=99` but LlamaForCausalLM has 4 decoder layers"):
        trainer.score()


def _poison_hook(token: int):
    """A forward hook on the input embeddings: rows holding `token` get a NaN embedding there (a forward gone bad
    for some inputs only)."""

    def hook(module, args, output):
        (input_ids,) = args
        return output.masked_fill((input_ids == token)[..., None], math.nan)

    return hook


def test_nonfinite_loss_marks_the_row_and_leaves_batch_mates_alone(tmp_path):
    dataset = make_math_problems(6, seed=3)
    trainer = make(dataset, tmp_path, resonance_batch_size=6, resonance_resume=False)
    clean = trainer.score()
    rows = [set(ids) for ids in trainer.prepare_scoring_dataset(dataset)["input_ids"]]
    token = min(t for t in set.union(*rows) if sum(t in r for r in rows) == 2)  # in two rows of six
    poisoned = [i for i, r in enumerate(rows) if token in r]
    handle = trainer.model.get_input_embeddings().register_forward_hook(_poison_hook(token))
    try:
        with pytest.warns(UserWarning, match=rf"{len(poisoned)} of 6 rows .*'nonfinite': {len(poisoned)}"):
            scored = trainer.score()
    finally:
        handle.remove()
    status = np.array(scored["resonance_status"])
    assert (status[poisoned] == "nonfinite").all() and (np.delete(status, poisoned) == "ok").all()
    values, reference = np.array(scored["resonance"]), np.array(clean["resonance"])
    assert np.isnan(values[poisoned]).all()
    np.testing.assert_allclose(np.delete(values, poisoned), np.delete(reference, poisoned), rtol=1e-6)


# ---- truncation --------------------------------------------------------------------------------------------


def test_rows_cut_by_max_length_are_flagged_and_noticed(tmp_path):
    dataset = make_math_problems(6, seed=5, flaw_rate=0.5)
    full = make(dataset, tmp_path, max_length=None, resonance_resume=False)
    lengths = [len(ids) for ids in full.prepare_scoring_dataset(dataset)["input_ids"]]
    prompt_lengths = [labels.count(-100) for labels in full.prepare_scoring_dataset(dataset)["labels"]]
    max_length = sorted(lengths)[2]  # rows longer than this are cut; some of them past their first loss token?
    trainer = make(dataset, tmp_path, max_length=max_length, resonance_resume=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scored = trainer.score()
    cut = [n > max_length for n in lengths]
    assert scored["resonance_truncated"] == cut and sum(cut) == 3
    fully_cut = [c and p >= max_length - 1 for c, p in zip(cut, prompt_lengths)]
    expected_status = ["truncated" if f else "ok" for f in fully_cut]
    assert scored["resonance_status"] == expected_status
    partly = [i for i in range(6) if cut[i] and not fully_cut[i]]
    assert partly, "the data should have rows cut after their first loss token"
    notices = [str(w.message) for w in caught if "longer than max_length" in str(w.message)]
    assert len(notices) == 1 and notices[0].startswith(
        f"{len(partly)} rows are longer than max_length={max_length} tokens"
    )
    tokens = np.array(scored["resonance_tokens"])
    assert all(0 < tokens[i] <= max_length for i in partly)
    assert np.isfinite(np.array(scored["resonance"])[partly]).all()
    assert scored.features["resonance_truncated"].dtype == "bool"
