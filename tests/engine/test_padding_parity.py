"""A row's score does not depend on its batch-mates: LoRA adapter scores (and effective deltas) from a padded batch
of rows of uneven length equal batch size 1 and the literal per-row AdamW loop to 1e-12 relative in float64, with
right padding (TRL's collator) and left padding (a user's collator with position ids). In float32 they agree to
the rounding of float32 sums over a different number of padded positions (measured ~7e-9 relative)."""

import numpy as np
import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.engine.oracle import literal_loop_scores
from resofilter_hf.engine.rows import ROW_ID
from resofilter_hf.toy import cached_tiny_model, make_math_problems


N_ROWS = 5
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["up_proj", "q_proj"], init_lora_weights=False)


class LeftPadCollator:
    """Pads on the left, with the position ids a left-padded batch needs (the model's default counts from 0)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples):
        width = max(len(e["input_ids"]) for e in examples)
        out = {"input_ids": [], "labels": [], "attention_mask": [], "position_ids": []}
        for e in examples:
            n, pad = len(e["input_ids"]), width - len(e["input_ids"])
            out["input_ids"].append([self.pad_token_id] * pad + list(e["input_ids"]))
            out["labels"].append([-100] * pad + list(e["labels"]))
            out["attention_mask"].append([0] * pad + [1] * n)
            out["position_ids"].append([0] * pad + list(range(n)))
        return {k: torch.tensor(v) for k, v in out.items()}


def lora_trainer(tmp_path, arch, dtype, padding, **resonance):
    model_dir = cached_tiny_model(arch=arch)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    dataset = make_math_problems(N_ROWS, seed=9, flaw_rate=0.5, style="conversational")
    args = ResonanceConfig(
        str(tmp_path), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, resonance_resume=False,
        **resonance,
    )  # fmt: skip
    collator = LeftPadCollator(tokenizer.pad_token_id) if padding == "left" else None
    trainer = ResonanceTrainer(
        model, args, data_collator=collator, train_dataset=dataset, processing_class=tokenizer,
        peft_config=LoraConfig(**LORA),
    )  # fmt: skip
    assert {t.role for t in trainer.resonance_targets} == {"lora_A", "lora_B"}
    return trainer, dataset


def scores_at(trainer, batch_size):
    trainer.args.resonance_batch_size = batch_size
    return np.array(trainer.score()["resonance"])


def rel(a, b):
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_float64_lora_scores_do_not_depend_on_batch_mates(tmp_path, arch, padding):
    trainer, dataset = lora_trainer(tmp_path, arch, torch.float64, padding)
    prepared = trainer.prepare_scoring_dataset(dataset.add_column(ROW_ID, list(range(N_ROWS))))
    rows = sorted(prepared, key=lambda r: r[ROW_ID])
    lengths = [len(r["input_ids"]) for r in rows]
    assert max(lengths) > 1.2 * min(lengths), "the rows should be of uneven length (padding in the batch)"
    batched, alone = scores_at(trainer, N_ROWS), scores_at(trainer, 1)
    names = [t.name + ".weight" for t in trainer.resonance_targets]
    literal = np.array(literal_loop_scores(trainer.model, rows, names))
    assert rel(batched, alone) <= 1e-12
    assert rel(batched, literal) <= 1e-12 and rel(alone, literal) <= 1e-12


@pytest.mark.parametrize("padding", ["right", "left"])
def test_float64_effective_lora_delta_does_not_depend_on_batch_mates(tmp_path, padding):
    trainer, _ = lora_trainer(tmp_path, "llama", torch.float64, padding, resonance_lora_delta="effective")
    assert rel(scores_at(trainer, N_ROWS), scores_at(trainer, 1)) <= 1e-12


def test_float32_lora_scores_agree_to_float32_rounding(tmp_path):
    trainer, _ = lora_trainer(tmp_path, "llama", torch.float32, "left")
    assert rel(scores_at(trainer, N_ROWS), scores_at(trainer, 1)) <= 1e-7
