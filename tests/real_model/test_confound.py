"""The confound verdict on a real model: SmolLM2-135M-Instruct scoring real GSM8K solutions. The paper's score
follows the solution's length closely (bench/results/real_model.md: rho -0.77 on 200-row pools), so `score()` says
so, once, with the option that addresses it; the same rows as `messages` (SmolLM2's template has no generation
markers, so the loss covers the question too) are said to score the prompt as well."""

import warnings

import pytest
import torch
from datasets import Dataset
from real_rows import GSM8K_SAMPLE, scoring_trainer
from transformers import AutoModelForCausalLM

from resofilter_hf import read_provenance
from resofilter_hf.confounds import STRONG_RHO


pytestmark = pytest.mark.real_model
N_ROWS = 36  # over the 30 rows a verdict needs


def spread_rows(n: int) -> Dataset:
    """`n` rows of the vendored GSM8K sample spread evenly over its solution lengths (the sample's shortest rows
    alone would hide a length effect behind their narrow range), as conversational prompt/completion rows."""
    from resofilter_hf.evaluation.gsm8k import load_gsm8k

    from lab.gsm8k_real import chat_rows

    train = load_gsm8k("train", path=GSM8K_SAMPLE)
    by_length = sorted(range(len(train)), key=lambda i: (len(train[i]["answer"]), i))
    chosen = sorted(by_length[round(k * (len(by_length) - 1) / (n - 1))] for k in range(n))
    rows = train.select(chosen)
    return chat_rows(rows["question"], rows["answer"])


def caught(call):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in seen]


def test_the_length_verdict_fires_on_real_solutions(smollm2, tokenizer, tmp_path):
    rows = spread_rows(N_ROWS)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    trainer = scoring_trainer(
        model, tokenizer, rows, tmp_path / "pc", max_length=512, resonance_batch_size=8
    )  # no row is cut
    scored, said = caught(trainer.score)
    entry = read_provenance(scored)["scoring"]["confounds"]["resonance"]
    rho = entry["length"]
    assert rho <= -STRONG_RHO, rho  # -0.76 here, as over 200-row pools
    verdicts = [m for m in said if "with completion length" in m]
    assert verdicts == [
        f"`resonance` has Spearman {rho:+.2f} with completion length ({entry['n']} rows scored): keeping the lowest is close to keeping the "
        'longest rows; select with `stratify_by="length"` (CLI: `--stratify-by length`) to compare rows of similar '
        "length only."
    ]
    assert not [m for m in said if "prompt's tokens" in m]

    few = rows.select(range(4))  # the note does not need many rows
    messages = Dataset.from_dict({"messages": [p + c for p, c in zip(few["prompt"], few["completion"])]})
    scored, said = caught(lambda: trainer.score(messages))
    assert read_provenance(scored)["scoring"]["loss_on_prompt"] is True
    assert sum("falls on the prompt's tokens too" in m for m in said) == 1
