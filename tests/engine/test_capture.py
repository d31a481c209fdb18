"""Per-sample gradients from the hooks against a batch-size-1 autograd loop, and LoRA scores against the
literal loop on the adapter (its A/B deltas, and the effective weight delta)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.engine.capture import GradientCapture
from resofilter_hf.engine.deltas import per_sample_gradient
from resofilter_hf.engine.oracle import literal_loop_scores
from resofilter_hf.engine.rows import ROW_ID
from resofilter_hf.engine.scorer import scoring_mode
from resofilter_hf.toy import cached_tiny_model, make_math_problems


def rel_err(got, ref):
    return np.max(np.abs(got - ref) / np.abs(ref))


LORA = dict(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["up_proj", "q_proj"], init_lora_weights=False)


@pytest.fixture(scope="module")
def data():
    return make_math_problems(6, seed=9, flaw_rate=0.5, style="conversational")


def peft_trainer(tmp_path, data, **resonance):
    """A ResonanceTrainer whose model TRL wraps with a LoRA adapter (float64, B initialised non-zero)."""
    model_dir = cached_tiny_model(arch="llama")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    args = ResonanceConfig(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        resonance_resume=False,
        **resonance,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return ResonanceTrainer(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=LoraConfig(**LORA)
    )


def prepared_rows(trainer, data):
    prepared = trainer.prepare_scoring_dataset(data.add_column(ROW_ID, list(range(len(data)))))
    return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in sorted(prepared, key=lambda r: r[ROW_ID])]


@pytest.mark.parametrize("target", ["weights", "lora"])
def test_per_sample_gradients_equal_a_batch_size_one_loop(tmp_path, data, target):
    trainer = peft_trainer(tmp_path, data, resonance_target=target)
    model, targets = trainer.model, trainer.resonance_targets
    rows = prepared_rows(trainer, data)
    scorer = trainer.scorer()
    with scoring_mode(model, targets), GradientCapture(targets) as capture:
        scorer._forward_backward(rows, capture)
        batched = {r.target.name: per_sample_gradient(r, torch.float64) for r in capture.records}
        capture.clear()
        for i, row in enumerate(rows):  # the reference: plain autograd on one sample, the model's own logits
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor(row["labels"])
            logits = model(input_ids=ids).logits[0, :-1]
            loss = F.cross_entropy(logits, labels[1:], ignore_index=-100)
            grads = torch.autograd.grad(loss, [t.weight for t in targets])
            capture.clear()
            for t, g in zip(targets, grads):
                torch.testing.assert_close(batched[t.name][i], g, rtol=1e-9, atol=1e-14)
    assert any(float(g.abs().max()) > 0 for g in batched.values())
    if target == "lora":  # init_lora_weights=False: B != 0, so A gets a gradient too
        assert all(float(batched[t.name].abs().max()) > 0 for t in targets if t.role == "lora_A")


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_lora_adapter_scores_equal_the_literal_loop(tmp_path, data, optimizer):
    lr = 1e-5 if optimizer == "adamw" else 1e-2
    trainer = peft_trainer(tmp_path, data, resonance_optimizer=optimizer, resonance_lr=lr, resonance_batch_size=4)
    assert {t.role for t in trainer.resonance_targets} == {"lora_A", "lora_B"}
    names = [t.name + ".weight" for t in trainer.resonance_targets]
    reference = literal_loop_scores(trainer.model, prepared_rows(trainer, data), names, optimizer=optimizer, lr=lr)
    got = np.array(trainer.score()["resonance"])
    assert rel_err(got, np.array(reference)) <= 1e-9


def test_lora_effective_delta_equals_the_literal_loop(tmp_path, data):
    trainer = peft_trainer(tmp_path, data, resonance_lora_delta="effective", resonance_batch_size=3)
    model = trainer.model
    groups = sorted({t.group for t in trainer.resonance_targets})
    layers = {name: model.get_submodule(name) for name in groups}
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.eval()
    reference = []
    for row in prepared_rows(trainer, data):  # literal: real AdamW step on the adapter, diff of s * B @ A
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(theta[n])
        before = {
            g: m.scaling["default"] * m.lora_B["default"].weight @ m.lora_A["default"].weight
            for g, m in layers.items()
        }
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.01)
        logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1]
        F.cross_entropy(logits, torch.tensor(row["labels"][1:]), ignore_index=-100).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            deltas = [
                (m.scaling["default"] * m.lora_B["default"].weight @ m.lora_A["default"].weight) - before[g]
                for g, m in layers.items()
            ]
        reference.append(float(np.mean([d.abs().mean().item() for d in deltas])))
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(theta[n])
    got = np.array(trainer.score()["resonance"])
    assert rel_err(got, np.array(reference)) <= 1e-7  # the reference's B'A' - BA cancels ~8 digits in fp64


def test_lora_dropout_is_off_while_scoring(tmp_path, data):
    trainer = peft_trainer(
        tmp_path,
        data,
    )
    trainer.model.train()
    first = list(trainer.score()["resonance"])
    second = list(trainer.score()["resonance"])
    assert first == second
    assert trainer.model.training  # mode restored


def test_adamw_state_uses_the_mean_squared_per_sample_gradient(tmp_path, data):
    """The settled-moment transform: v = mean over rows of g_i^2 (from a batch-size-1 loop), then one step."""
    from resofilter_hf.engine.deltas import AdamState, StepTransform

    trainer = peft_trainer(tmp_path, data, resonance_target="weights", resonance_optimizer="adamw_state")
    model, targets = trainer.model, trainer.resonance_targets
    rows = prepared_rows(trainer, data)
    grads = []  # per row, per target
    with scoring_mode(model, targets):
        for row in rows:
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1]
            loss = F.cross_entropy(logits, torch.tensor(row["labels"][1:]), ignore_index=-100)
            grads.append(torch.autograd.grad(loss, [t.weight for t in targets]))
    transform = StepTransform("adamw_state")
    expected = []
    for row_grads in grads:
        per_target = []
        for k, t in enumerate(targets):
            v = torch.stack([g[k] ** 2 for g in grads]).mean(0)
            d = transform.delta(row_grads[k], t.weight.detach(), AdamState(exp_avg_sq=v))
            per_target.append(d.abs().mean().item())
        expected.append(np.mean(per_target))
    got = np.array(trainer.score()["resonance"])
    assert rel_err(got, np.array(expected)) <= 1e-9
    assert np.std(got) / np.mean(got) > 1e-3  # unlike the fresh step, this one varies across samples
