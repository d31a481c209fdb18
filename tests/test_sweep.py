"""Keep-ratio sweep: kept shares and row counts, one training per distinct selection, the plot; generation."""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

import resofilter_hf.sweep as sweep
from resofilter_hf.selection import select_by_resonance
from resofilter_hf.sweep import (
    ProxySettings,
    generate_answers,
    keep_ratio_sweep,
    summarize,
)
from resofilter_hf.toy import cached_tiny_model, make_math_problems, make_test_problems


TINY = ProxySettings(max_steps=1, batch_size=4, max_new_tokens=8, eval_batch_size=8)


@pytest.fixture(scope="module")
def model_dir():
    return cached_tiny_model(arch="llama")


@pytest.fixture
def trained(monkeypatch):
    """The prompts of every training set `train_proxy` is given, in call order (training still runs)."""
    prompts = []
    real = sweep.train_proxy

    def recording(model_dir, train_dataset, settings, **kwargs):
        prompts.append(list(train_dataset["prompt"]))
        return real(model_dir, train_dataset, settings, **kwargs)

    monkeypatch.setattr(sweep, "train_proxy", recording)
    return prompts


def test_sweep_table_rows_and_one_training_per_selection(model_dir, tmp_path, trained):
    pool = make_math_problems(16, seed=7)
    pool = pool.add_column("resonance", [float(x) for x in np.random.default_rng(0).permutation(16)])
    pool = pool.add_column("other", [float(x) for x in range(16)])
    test = make_test_problems(4, seed=7, exclude=pool["prompt"])
    keeps = (0.25, 0.5, 0.75, 1.0)
    table = keep_ratio_sweep(
        model_dir, pool, test, keeps=keeps, columns=("resonance", "other"), settings=TINY, output_dir=tmp_path
    )
    assert [(r["column"], r["keep"]) for r in table] == [(c, k) for c in ("resonance", "other") for k in keeps]
    for row in table:
        assert row["n_input"] == 16 and row["n_test"] == 4 and row["steps"] == 1
        assert row["n_train"] == math.ceil(16 * row["keep"])
        assert math.isfinite(row["heldout_loss"]) and 0 <= row["accuracy"] <= row["extracted"] <= 1
    assert len(trained) == 7  # keep=1.0 is the same selection under both columns: trained once
    expected = [select_by_resonance(pool, keep=k, column=c)["prompt"] for c in ("resonance", "other") for k in keeps]
    assert trained == [p for i, p in enumerate(expected) if i != 7]


def test_sweep_drops_the_low_end_of_alignment(model_dir, tmp_path, trained):
    values = [0.9, -0.8, 0.7, -0.6, 0.5, 0.4, -0.3, 0.35]
    table = Dataset.from_dict(
        {
            "prompt": [f"q{k}\n" for k in range(8)],
            "completion": ["a"] * 8,
            "resonance_alignment": values,
            "copy": values,
        }
    )
    rows = keep_ratio_sweep(
        model_dir, table, make_test_problems(2, seed=1), keeps=(0.5,), columns=("resonance_alignment", "copy"),
        settings=TINY, output_dir=tmp_path,
    )  # fmt: skip
    assert [r["drop"] for r in rows] == ["lowest", "highest"]
    kept_low = select_by_resonance(table, keep=0.5, column="resonance_alignment", drop="lowest")["prompt"]
    kept_high = select_by_resonance(table, keep=0.5, column="copy")["prompt"]
    assert trained == [kept_low, kept_high] and kept_low == ["q0\n", "q2\n", "q4\n", "q5\n"]


def test_summarize_means_and_spread():
    table = [{"k": "a", "x": 1.0}, {"k": "a", "x": 3.0}, {"k": "b", "x": 5.0}]
    assert summarize(table, ("k",), ("x",)) == [
        {"k": "a", "n_runs": 2, "x_mean": 2.0, "x_std": math.sqrt(2.0)},
        {"k": "b", "n_runs": 1, "x_mean": 5.0, "x_std": 0.0},
    ]


def test_generate_answers_matches_plain_generate_in_input_order(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = make_test_problems(3, seed=8)["prompt"]
    chat = [{"role": "user", "content": prompts[0]}]
    got = generate_answers(model, tokenizer, [*prompts, chat], max_new_tokens=6, batch_size=1)
    expected = []
    for ids in [tokenizer(p)["input_ids"] for p in prompts] + [
        tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    ]:
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=6, do_sample=False, eos_token_id=tokenizer.eos_token_id
        )
        expected.append(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True))
    assert got == expected
    assert not model.training
