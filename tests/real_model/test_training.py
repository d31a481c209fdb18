"""SmolLM2-135M-Instruct trained through `ResonanceTrainer`: with scoring off it trains exactly as `SFTTrainer` on
the user's own `SFTConfig`; with in-flight scoring, the scores of a step equal `score()` on the same state."""

import numpy as np
import pytest
import torch
from real_rows import MAX_LENGTH, QUIET, gsm8k_chat, rel_err
from safetensors import safe_open
from transformers import AutoModelForCausalLM
from trl import SFTConfig, SFTTrainer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance


pytestmark = pytest.mark.real_model


def train(cls, smollm2, tokenizer, rows, out):
    config = SFTConfig(
        output_dir=str(out), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-4, logging_steps=1,
        max_length=MAX_LENGTH, seed=0, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    trainer = cls(model=model, args=config, train_dataset=rows, processing_class=tokenizer)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses, {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def test_with_scoring_off_it_trains_exactly_as_sfttrainer(smollm2, tokenizer, tmp_path):
    rows = gsm8k_chat(6)
    sft_losses, sft_weights = train(SFTTrainer, smollm2, tokenizer, rows, tmp_path / "sft")
    ours_losses, ours_weights = train(ResonanceTrainer, smollm2, tokenizer, rows, tmp_path / "ours")
    assert len(sft_losses) == 3 and ours_losses == sft_losses
    assert sft_weights.keys() == ours_weights.keys()
    assert all(torch.equal(sft_weights[name], ours_weights[name]) for name in sft_weights)
    name = "model.layers.29.mlp.up_proj.weight"
    with safe_open(smollm2 / "model.safetensors", framework="pt") as saved:
        assert not torch.equal(saved.get_tensor(name), ours_weights[name]), "three steps at lr 1e-4 move the weights"


def test_inflight_scores_equal_score_on_the_same_state(smollm2, tokenizer, tmp_path):
    """learning_rate 0: the trained step leaves the weights as they were, so its per-sample scores are those of
    `score()` on the starting weights. float32, as users train: the training pass and the scoring pass round
    differently (in float64 too, to float32 rounding: transformers takes the training loss over float32 logits),
    measured 9e-7 relative; the rows' own deviations from lr differ by ~1e-4 relative, so the order is exact."""
    rows = gsm8k_chat(4)
    args = ResonanceConfig(
        output_dir=str(tmp_path), **QUIET, max_length=MAX_LENGTH, learning_rate=0.0, max_steps=1,
        per_device_train_batch_size=4, save_strategy="no", resonance_when="inflight",
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    trainer = ResonanceTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    before = trainer.score()
    trainer.train()
    inflight = trainer.scored_dataset
    assert inflight.column_names == [*rows.column_names, "resonance_epoch0"]
    assert inflight["prompt"] == rows["prompt"]
    got, expected = np.array(inflight["resonance_epoch0"]), np.array(before["resonance"])
    error = rel_err(got, expected)
    print(f"in-flight vs score(): max relative error {error:.1e}; deviations from lr {(expected - 1e-5) / 1e-5}")
    assert error <= 3e-6
    assert np.argsort(got).tolist() == np.argsort(expected).tolist()
    assert read_provenance(inflight)["scoring"]["target_names"] == read_provenance(before)["scoring"]["target_names"]
