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

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.engine.files import write_atomic
from resofilter_hf.provenance import check_table_suffix
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


# ---- round 3: reference steps, row ids, pre-tokenized rows, settings, formatting functions, outputs -------------


def test_a_nan_reference_row_is_left_out_of_the_step_and_named(tmp_path):
    dataset, reference = make_math_problems(4, seed=1), make_math_problems(5, seed=2)
    trainer = make(dataset, tmp_path, resonance_resume=False)
    rows = [set(ids) for ids in trainer.prepare_scoring_dataset(reference)["input_ids"]]
    scored_rows = set.union(*(set(ids) for ids in trainer.prepare_scoring_dataset(dataset)["input_ids"]))
    token = next(t for t in sorted(set.union(*rows)) if sum(t in r for r in rows) == 1 and t not in scored_rows)
    poisoned = next(i for i, r in enumerate(rows) if token in r)
    clean = trainer.score(reference=reference.select([i for i in range(5) if i != poisoned]))
    handle = trainer.model.get_input_embeddings().register_forward_hook(_poison_hook(token))
    try:
        with pytest.warns(UserWarning, match=rf"1 of the 5 usable `resonance_reference` rows have a non-finite step .*"
                                             rf"rows \[{poisoned}\]"):  # fmt: skip
            scored = trainer.score(reference=reference)
    finally:
        handle.remove()
    assert scored["resonance_status"] == ["ok"] * 4
    np.testing.assert_allclose(scored["resonance_alignment"], clean["resonance_alignment"], rtol=1e-5)
    info = read_provenance(scored)["scoring"]["reference"]
    assert info["n_used"] == 4 and info["n_nonfinite"] == 1 and info["n_rows"] == 5


@pytest.mark.parametrize(
    "rows, message",
    [
        ({"input_ids": [[5, 6, 7]], "labels": [None]}, r"row 0: `labels` must be a list of ints \(-100 for no loss\)"),
        (
            {"input_ids": [[5, 6], [5, 99999]]},
            r"row 1: `input_ids` holds token id 99999, outside the model's "
            r"vocabulary \(0\.\.\d+\)",
        ),
        ({"input_ids": [[5, -1, 6]]}, r"row 0: `input_ids` holds token id -1, outside"),
        ({"input_ids": [[5, 6, 7]], "labels": [[-100, 6, 123456]]}, r"row 0: `labels` holds 123456, neither -100"),
    ],
    ids=["labels-none", "id-beyond-vocab", "negative-id", "label-beyond-vocab"],
)
def test_bad_pre_tokenized_rows_are_named_at_construction_and_in_score(tmp_path, rows, message):
    dataset = Dataset.from_dict(rows)
    with pytest.raises(ValueError, match=message):
        make(dataset, tmp_path)
    trainer = make(Dataset.from_dict({"input_ids": [[5, 6, 7]]}), tmp_path, resonance_resume=False)
    with pytest.raises(ValueError, match=message):
        trainer.score(dataset)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_length", -5, r"`max_length` must be a whole number >= 1 \(tokens\) or None, got -5"),
        ("max_length", 0, r"`max_length` must be a whole number >= 1"),
        ("resonance_lr", 1e39, r"`resonance_lr` must be between 1e-12 and 100, got 1e\+39"),
        ("resonance_lr", 1e-320, r"`resonance_lr` must be between 1e-12 and 100"),
        ("resonance_eps", 5.0, r"`resonance_eps` must be between 1e-30 and 1"),
    ],
)
def test_settings_outside_a_sane_range_are_refused_by_name(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        ResonanceConfig(str(tmp_path), **QUIET, **{field: value})
    if field == "max_length":  # a user's SFTConfig carries it into the trainer, as users call it
        args = SFTConfig(str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_length=value)
        with pytest.raises(ValueError, match=message):
            ResonanceTrainer(str(MODEL_DIR), args, train_dataset=make_math_problems(2))


def test_formatting_func_datasets_score_the_tokens_they_train_on(tmp_path):
    rows = make_math_problems(5, seed=3)
    qa = Dataset.from_dict({"q": rows["prompt"], "a": rows["completion"]})

    def formatting(example):
        return f"Q: {example['q']}\nA: {example['a']}"

    trainer = ResonanceTrainer(
        AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float64),
        ResonanceConfig(str(tmp_path / "f"), **QUIET, resonance_resume=False),
        train_dataset=qa,
        processing_class=AutoTokenizer.from_pretrained(MODEL_DIR),
        formatting_func=formatting,
    )
    scored = trainer.score()
    assert scored.column_names[:2] == ["q", "a"] and scored["resonance_status"] == ["ok"] * 5
    trained = trainer.train_dataset["input_ids"]  # what TRL prepared for training
    assert scored["resonance_tokens"] == [len(ids) - 1 for ids in trained]
    texts = Dataset.from_dict({"text": [formatting(r) for r in qa]})
    expected = make(texts, tmp_path / "t", model=AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float64),
                    resonance_resume=False).score()  # fmt: skip
    np.testing.assert_array_equal(scored["resonance"], expected["resonance"])
    with pytest.raises(ValueError, match=r"row 1: `formatting_func` returned None, not a string"):
        ResonanceTrainer(
            str(MODEL_DIR), ResonanceConfig(str(tmp_path / "n"), **QUIET),
            train_dataset=Dataset.from_dict({"q": ["x", "y"], "a": ["z", None]}), formatting_func=lambda e: e["a"],
        )  # fmt: skip


def test_an_output_path_that_is_a_folder_is_named_before_any_write(tmp_path):
    folder = tmp_path / "scored.parquet"
    folder.mkdir()
    with pytest.raises(ValueError, match=rf"cannot write {folder}: it is a folder"):
        check_table_suffix(folder)
    with pytest.raises(IsADirectoryError, match=rf"cannot write {folder}: it is a folder"):
        write_atomic(folder, "x")
    assert not list(tmp_path.glob(".*"))


def test_tool_call_and_content_part_rows_score(tmp_path):
    call = {"type": "function", "function": {"name": "calc", "arguments": {"x": "2+2"}}}
    tools = [
        [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
         {"role": "tool", "content": "4"}, {"role": "assistant", "content": "It is 4."}],
    ] * 2  # fmt: skip
    parts = [
        [{"role": "user", "content": [{"type": "text", "text": "3 + 1?"}]},
         {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        for answer in ("It is 4.", "  ")
    ]  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{% if m['content'] is string %}{{ m['content'] }}"
        "{% elif m['content'] %}{% for p in m['content'] %}{{ p['text'] }}{% endfor %}{% endif %}"
        "{% for c in m.get('tool_calls') or [] %}<call>{{ c['function']['name'] }}</call>{% endfor %}<|end|>"
        "{% endfor %}"
    )
    trainer = ResonanceTrainer(
        AutoModelForCausalLM.from_pretrained(MODEL_DIR),
        ResonanceConfig(str(tmp_path), **QUIET, resonance_resume=False),
        train_dataset=Dataset.from_dict({"messages": tools}),
        processing_class=tokenizer,
    )
    assert trainer.score()["resonance_status"] == ["ok", "ok"]
    with pytest.warns(UserWarning, match=r"1 of 2 rows have no resonance score .*'empty_completion': 1"):
        scored = trainer.score(Dataset.from_dict({"messages": parts}))
    assert scored["resonance_status"] == ["ok", "empty_completion"]
