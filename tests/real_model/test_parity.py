"""SmolLM2-135M-Instruct in float64 on GSM8K chat rows: `score()` against the literal loop (full weights, LoRA
adapter deltas, LoRA effective deltas), alignment against per-row autograd with real optimizer steps, and a row's
score independent of its batch-mates."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig
from real_rows import (
    gsm8k_chat,
    literal_effective_lora_scores,
    literal_scores,
    lora_modules,
    prepared_rows,
    rel_err,
    row_loss,
    scoring_trainer,
)
from transformers import AutoModelForCausalLM

from resofilter_hf import read_provenance


pytestmark = pytest.mark.real_model

LR, WD, EPS = 1e-5, 0.01, 1e-8
LAST_3 = [27, 28, 29]  # SmolLM2 has 30 layers: the paper's targets are the up-projections of these


def test_full_weight_scores_equal_the_literal_loop(model64, tokenizer, tmp_path):
    rows = gsm8k_chat(3)
    trainer = scoring_trainer(model64, tokenizer, rows, tmp_path)
    scored = trainer.score()
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in LAST_3]
    provenance = read_provenance(scored)["scoring"]
    assert provenance["target_names"] == [n.removesuffix(".weight") for n in names]  # the paper's targets
    assert provenance["layers"] == LAST_3 and provenance["modules"] == ["mlp.up_proj"]
    assert scored["resonance_status"] == ["ok"] * 3
    error = rel_err(scored["resonance"], literal_scores(trainer, rows, names))
    print(f"full weights vs the literal loop: max relative error {error:.1e}")
    assert error <= 1e-9


LORA = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["up_proj"], layers_to_transform=LAST_3,
                  init_lora_weights=False)  # fmt: skip  # B != 0: both factors move


def test_lora_adapter_and_effective_scores_equal_the_literal_loop(smollm2, tokenizer, tmp_path):
    rows = gsm8k_chat(3)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float64)
    trainer = scoring_trainer(model, tokenizer, rows, tmp_path, peft_config=LORA)
    adapter = trainer.score()
    assert {t.role for t in trainer.resonance_targets} == {"lora_A", "lora_B"}  # auto: the adapters cover them
    assert read_provenance(adapter)["scoring"]["target"] == "lora"
    names = [n for n, _ in trainer.model.named_parameters() if "lora_" in n]
    assert len(names) == 6 and len(lora_modules(trainer.model)) == 3
    error = rel_err(adapter["resonance"], literal_scores(trainer, rows, names))
    print(f"LoRA adapter deltas vs the literal loop: max relative error {error:.1e}")
    assert error <= 1e-9

    trainer.args.resonance_lora_delta = "effective"
    effective = np.array(trainer.score()["resonance"])
    reference = literal_effective_lora_scores(trainer.model, prepared_rows(trainer, rows))
    error = rel_err(effective, reference)
    print(f"LoRA effective deltas vs a real AdamW step on the adapters: max relative error {error:.1e}")
    assert error <= 1e-9
    assert not np.allclose(effective, adapter["resonance"], rtol=1e-3), "the two deltas are different scores"


def real_step(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The weight change of one real fresh torch AdamW step on gradient `g`."""
    w = w.detach()
    p = torch.nn.Parameter(w.clone())
    optimizer = torch.optim.AdamW([p], lr=LR, weight_decay=WD, eps=EPS)
    p.grad = g.clone()
    optimizer.step()
    return (p.detach() - w).flatten()


def expected_alignment(model, rows, reference_rows) -> np.ndarray:
    """Cosine of each row's AdamW step (over the three targets, flattened) with the mean step of the reference
    rows; each gradient from plain autograd on one row's loss."""
    weights = [model.model.layers[i].mlp.up_proj.weight for i in LAST_3]
    model.eval()

    def step(row):
        grads = torch.autograd.grad(row_loss(model, row), weights)  # no graph kept: the steps are plain tensors
        return torch.cat([real_step(w, g) for w, g in zip(weights, grads)])

    mean_reference = torch.stack([step(r) for r in reference_rows]).mean(0)
    return np.array([F.cosine_similarity(step(r), mean_reference, dim=0).item() for r in rows])


def test_alignment_equals_per_row_autograd_with_real_steps(model64, tokenizer, tmp_path):
    rows, reference = gsm8k_chat(5).select(range(3)), gsm8k_chat(5).select([3, 4])
    trainer = scoring_trainer(model64, tokenizer, rows, tmp_path)
    got = np.array(trainer.score(reference=reference)["resonance_alignment"])
    expected = expected_alignment(model64, prepared_rows(trainer, rows), prepared_rows(trainer, reference))
    assert np.abs(expected).min() > 1e-3, "cosines near zero would make the relative check meaningless"
    error = rel_err(got, expected)
    print(f"alignment vs per-row autograd: max relative error {error:.1e}; cosines {np.round(expected, 4)}")
    assert error <= 1e-9


def test_a_rows_score_does_not_depend_on_its_batch_mates(model64, tokenizer, tmp_path):
    rows = gsm8k_chat(8)
    trainer = scoring_trainer(model64, tokenizer, rows, tmp_path, max_length=128, resonance_batch_size=8)
    lengths = [len(r["input_ids"]) for r in prepared_rows(trainer, rows)]
    assert min(lengths) < max(lengths) == 128, f"the batch should be padded: {lengths}"
    cut = [len(ids) > 128 for ids in trainer.prepare_scoring_dataset(rows, truncate=False)["input_ids"]]
    assert 0 < sum(cut) < len(cut)
    batched = trainer.score()
    trainer.args.resonance_batch_size = 1
    alone = trainer.score()
    error = rel_err(batched["resonance"], alone["resonance"])
    print(f"batch 8 (lengths {lengths}) vs batch 1: max relative error {error:.1e}")
    assert error <= 1e-12
    np.testing.assert_allclose(batched["resonance_loss"], alone["resonance_loss"], rtol=1e-12)
    assert batched["resonance_tokens"] == alone["resonance_tokens"]
    assert batched["resonance_truncated"] == cut == alone["resonance_truncated"]
