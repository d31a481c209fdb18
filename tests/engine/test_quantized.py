"""QLoRA: a 4-bit base (bitsandbytes) with LoRA adapters, scored and trained on CPU.

bitsandbytes' CPU backend re-packs 4-bit weights for an inference kernel without backward after an eval-mode,
no-grad forward; from then on the adapters silently get no gradient. Scoring runs in eval mode, so these tests
check that it never leaves the model in that state, and that a model already in it is refused.
"""

import numpy as np
import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.engine.quantized import packed_4bit_modules
from resofilter_hf.toy import cached_tiny_model, make_math_problems


bnb = pytest.importorskip("bitsandbytes")


def qlora_trainer(tmp_path, eval_dataset=None, **kwargs):
    model_dir = cached_tiny_model(arch="llama")
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quantization)
    args = ResonanceConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True,
        per_device_train_batch_size=3, logging_steps=1, save_strategy="no", learning_rate=1e-2, **kwargs,
    )  # fmt: skip
    return ResonanceTrainer(
        model=model,
        args=args,
        train_dataset=make_math_problems(9, seed=1),
        eval_dataset=eval_dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(r=4, target_modules=["up_proj", "down_proj"], lora_dropout=0.0),
    )


def lora_params(trainer):
    return {n: p.detach().float().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}


def test_scoring_a_4bit_model_leaves_it_trainable(tmp_path):
    trainer = qlora_trainer(tmp_path, max_steps=2)
    assert all(t.role in ("lora_A", "lora_B") for t in trainer.resonance_targets)
    scored = trainer.score()
    assert np.isfinite(scored["resonance"]).all()
    assert packed_4bit_modules(trainer.model) == []
    before = lora_params(trainer)
    trainer.train()
    after = lora_params(trainer)
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    assert sorted(moved) == sorted(before), "every adapter tensor must keep learning after scoring"


def test_a_repacked_4bit_model_is_refused_with_a_clear_error(tmp_path):
    trainer = qlora_trainer(tmp_path, max_steps=1, resonance_when="inflight")
    trainer.model.eval()
    with torch.no_grad():  # what generate() or an outside evaluation does
        trainer.model(input_ids=torch.tensor([[1, 5, 7, 9]]))
    assert packed_4bit_modules(trainer.model), "bitsandbytes did not re-pack: this test checks nothing here"
    with pytest.raises(RuntimeError, match=r"Scoring: bitsandbytes re-packed .* 4-bit layers .*no backward"):
        trainer.score()
    with pytest.raises(RuntimeError, match=r"Training: bitsandbytes re-packed"):
        trainer.train()


def test_evaluation_during_training_keeps_adapters_learning(tmp_path):
    trainer = qlora_trainer(
        tmp_path, eval_dataset=make_math_problems(3, seed=2), max_steps=4, eval_strategy="steps", eval_steps=1
    )
    snapshots = []

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots.append(lora_params(trainer))

    trainer.add_callback(Snapshot())
    trainer.train()
    assert packed_4bit_modules(trainer.model) == []
    for earlier, later in zip(snapshots, snapshots[1:]):  # each step after an evaluation still moves every adapter
        assert all(not torch.equal(earlier[n], later[n]) for n in earlier)


def test_inflight_scores_qlora_adapters(tmp_path):
    trainer = qlora_trainer(tmp_path, max_steps=3, resonance_when="inflight")
    trainer.train()
    column = np.array(trainer.scored_dataset["resonance_epoch0"])
    assert np.isfinite(column).all() and len(column) == 9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA's CUDA kernels need a GPU; none on this machine")
def test_qlora_on_gpu_scores_and_trains(tmp_path):
    model_dir = cached_tiny_model(arch="llama")
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quantization, device_map={"": 0})
    args = ResonanceConfig(output_dir=str(tmp_path), report_to="none", max_steps=2, resonance_when="inflight",
                           per_device_train_batch_size=3)  # fmt: skip
    trainer = ResonanceTrainer(
        model=model, args=args, train_dataset=make_math_problems(6, seed=3),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(r=4, target_modules=["up_proj"], lora_dropout=0.0),
    )  # fmt: skip
    before = np.array(trainer.score()["resonance"])
    trainer.train()
    assert np.isfinite(before).all() and np.isfinite(trainer.scored_dataset["resonance_epoch0"]).all()
