"""The batched engine against the paper's literal loop (the oracle), row by row.

Two architectures x two data formats (prompt/completion strings, conversational) with uneven lengths, batch
sizes 1 and 7: float64 to 1e-9 relative (AdamW and SGD), float32 AdamW to 1e-5 with the oracle's ranking kept
wherever it separates two rows by more than that.
"""

import itertools

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.engine.oracle import literal_loop_scores
from resofilter_hf.engine.rows import ROW_ID
from resofilter_hf.toy import cached_tiny_model, make_math_problems


N_ROWS = 10
CASES = list(itertools.product(["llama", "qwen2"], ["text", "conversational"]))


def make_trainer(model_dir, dtype, dataset, output_dir, model=None, **resonance):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = model or AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    args = ResonanceConfig(
        output_dir=str(output_dir),
        report_to="none",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        resonance_resume=False,
        **resonance,
    )
    return ResonanceTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def oracle_scores(trainer, dataset, **kwargs):
    prepared = trainer.prepare_scoring_dataset(dataset.add_column(ROW_ID, list(range(len(dataset)))))
    rows = sorted(prepared, key=lambda r: r[ROW_ID])
    names = [t.name + ".weight" for t in trainer.resonance_targets]
    return np.array(literal_loop_scores(trainer.model, rows, names, **kwargs))


def rel_err(got, ref):
    return np.max(np.abs(got - ref) / np.abs(ref))


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def case(request, tmp_path_factory):
    arch, style = request.param
    model_dir = cached_tiny_model(arch=arch)
    # seed 5 mixes clean rows with long (repetition) and short (truncated) flawed ones: uneven lengths
    dataset = make_math_problems(N_ROWS, seed=5, flaw_rate=0.5, style=style)
    return model_dir, dataset, tmp_path_factory.mktemp(f"{arch}-{style}")


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_float64_engine_equals_literal_loop(case, optimizer):
    model_dir, dataset, out = case
    lr = 1e-5 if optimizer == "adamw" else 1e-2  # SGD: a step well above fp64 rounding of W
    trainer = make_trainer(model_dir, torch.float64, dataset, out, resonance_optimizer=optimizer, resonance_lr=lr)
    reference = oracle_scores(trainer, dataset, optimizer=optimizer, lr=lr)
    lengths = [len(ids) for ids in trainer.prepare_scoring_dataset(dataset)["input_ids"]]
    assert max(lengths) > 1.5 * min(lengths), "the parity data should have uneven lengths"
    for batch_size in (1, 7):
        trainer.args.resonance_batch_size = batch_size
        scored = trainer.score(dataset)
        assert scored["resonance_status"] == ["ok"] * N_ROWS
        assert rel_err(np.array(scored["resonance"]), reference) <= 1e-9, f"batch size {batch_size}"


def test_float32_adamw_within_1e5_and_same_ranking(case):
    model_dir, dataset, out = case
    trainer = make_trainer(model_dir, torch.float32, dataset, out)
    reference = oracle_scores(trainer, dataset)
    for batch_size in (1, 7):
        trainer.args.resonance_batch_size = batch_size
        got = np.array(trainer.score(dataset)["resonance"])
        assert rel_err(got, reference) <= 1e-5, f"batch size {batch_size}"
        separated = 0
        for i, j in itertools.combinations(range(N_ROWS), 2):
            if abs(reference[i] - reference[j]) > 1e-5 * abs(reference[i]):
                separated += 1
                assert np.sign(got[i] - got[j]) == np.sign(reference[i] - reference[j]), (i, j)
        assert separated > 0, "no pair separated: the ranking check checked nothing"


@pytest.mark.parametrize("metric", ["l2", "max_abs", "std"])
def test_other_metrics_equal_literal_loop(metric, tmp_path):
    model_dir = cached_tiny_model(arch="llama")
    dataset = make_math_problems(6, seed=2)
    trainer = make_trainer(
        model_dir, torch.float64, dataset, tmp_path, resonance_metric=metric, resonance_batch_size=4
    )
    reference = oracle_scores(trainer, dataset, metric=metric)
    assert rel_err(np.array(trainer.score()["resonance"]), reference) <= 1e-9


def test_gemma2_softcapped_tied_head_equals_literal_loop(tmp_path):
    """Gemma-2 (the paper's family): final-logit soft-capping and tied embeddings go through the chunked head."""
    model_dir = cached_tiny_model(arch="gemma2")
    dataset = make_math_problems(6, seed=4, flaw_rate=0.5)
    trainer = make_trainer(model_dir, torch.float64, dataset, tmp_path, resonance_batch_size=4)
    assert trainer.model.config.final_logit_softcapping
    reference = oracle_scores(trainer, dataset)
    assert rel_err(np.array(trainer.score()["resonance"]), reference) <= 1e-9
