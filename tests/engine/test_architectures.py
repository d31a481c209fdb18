"""`score()` with default settings on every tiny architecture of the toy factory, against the literal loop.

The oracle's tensors are written out here by hand from each family's modeling code (parameter names, the up half
of a fused weight, GPT-2's transposed Conv1D), not taken from the engine's targets, so a wrong registry entry or
a wrong slice fails. Float64 to 1e-9 relative, float32 to 1e-5. A vision-language model trains through
`ResonanceTrainer` exactly as through `SFTTrainer` with scoring off, and scores before training with it on.
"""

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.engine.oracle import TensorPart, literal_loop_scores
from resofilter_hf.engine.rows import ROW_ID
from resofilter_hf.toy import cached_tiny_model, make_math_problems
from resofilter_hf.toy.model import ARCHITECTURES


N_ROWS = 5
LAST3 = (1, 2, 3)  # the toy models have 4 decoder layers
_UP = "mlp.up_proj.weight"


def _layers(prefix: str, suffix: str, layers=LAST3) -> list[TensorPart]:
    return [TensorPart(f"{prefix}.{i}.{suffix}") for i in layers]


def _experts_up(name: str, config) -> TensorPart:
    """[experts, 2I, in] stored as [gate; up] per expert (Qwen-MoE, Mixtral, Gemma-4: `gate, up = y.chunk(2)`)."""
    inter = getattr(config, "moe_intermediate_size", None) or config.intermediate_size
    return TensorPart(name, (slice(None), slice(inter, 2 * inter), slice(None)))


def expected_parts(arch: str, config) -> list[TensorPart]:
    """The tensors the paper's score covers for `arch`, as parameter names and slices of the real weights."""
    text = config.get_text_config()
    if arch == "gpt2":  # Conv1D: weight [in, out]
        return [TensorPart(f"transformer.h.{i}.mlp.c_fc.weight", transposed=True) for i in LAST3]
    if arch == "gpt_neox":
        return _layers("gpt_neox.layers", "mlp.dense_h_to_4h.weight")
    if arch == "phi3":  # gate, up_states = gate_up_proj(x).chunk(2, dim=-1)
        inter = text.intermediate_size
        return [TensorPart(f"model.layers.{i}.mlp.gate_up_proj.weight", (slice(inter, 2 * inter),)) for i in LAST3]
    if arch == "lfm2":  # w2(silu(w1 x) * w3 x)
        return _layers("model.layers", "feed_forward.w3.weight")
    if arch == "nemotron_h":  # mamba, mlp, attention, moe: the last layers with an up-projection are 1 and 3
        return [
            TensorPart("model.layers.1.mixer.up_proj.weight"),
            TensorPart("model.layers.3.mixer.experts.up_proj"),  # no gate: relu^2(up x)
            TensorPart("model.layers.3.mixer.shared_experts.up_proj.weight"),
        ]
    if arch in ("qwen2_moe", "qwen3_moe"):  # layer 2 is the dense MLP layer (mlp_only_layers)
        parts = [_experts_up("model.layers.1.mlp.experts.gate_up_proj", text), TensorPart(f"model.layers.2.{_UP}")]
        parts.append(_experts_up("model.layers.3.mlp.experts.gate_up_proj", text))
        if arch == "qwen2_moe":
            parts[1:1] = [TensorPart("model.layers.1.mlp.shared_expert.up_proj.weight")]
            parts.append(TensorPart("model.layers.3.mlp.shared_expert.up_proj.weight"))
        return parts
    if arch == "mixtral":
        return [_experts_up(f"model.layers.{i}.mlp.experts.gate_up_proj", text) for i in LAST3]
    if arch == "gpt_oss":  # [experts, in, 2I], interleaved: gate_up[..., ::2], gate_up[..., 1::2]
        return [TensorPart(f"model.layers.{i}.mlp.experts.gate_up_proj", (Ellipsis, slice(1, None, 2))) for i in LAST3]
    prefix = "model.language_model.layers" if arch in ("gemma3", "gemma4") else "model.layers"
    if arch in ("gemma4", "gemma4_text"):  # an MLP and routed experts in every layer
        return [
            part
            for i in LAST3
            for part in (_experts_up(f"{prefix}.{i}.experts.gate_up_proj", text), TensorPart(f"{prefix}.{i}.{_UP}"))
        ]
    return _layers(prefix, _UP)


# The model's own arithmetic is not float64 throughout for these, so float64 parity is bounded by float32
# rounding: NemotronH returns float32 logits (`lm_head(h).float()`, the oracle's loss) and routes in float32;
# Gemma-4's router softmax is float32, so a row's gradients round differently in a batch than alone (exact at
# batch size 1, checked below).
FLOAT32_INSIDE = {"nemotron_h": 1e-5, "gemma4": 1e-5, "gemma4_text": 1e-5}


def make_trainer(arch, dtype, output_dir, **resonance):
    folder = cached_tiny_model(arch=arch)
    # float64 MoE: the grouped-mm expert kernel takes float32/bf16 only, so both sides use the eager loop
    extra = {"experts_implementation": "eager"} if dtype == torch.float64 else {}
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **extra)
    args = ResonanceConfig(
        str(output_dir), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, resonance_resume=False,
        **resonance,
    )  # fmt: skip
    dataset = make_math_problems(N_ROWS, seed=5, flaw_rate=0.5)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return ResonanceTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer), dataset


def oracle(trainer, dataset, arch):
    prepared = trainer.prepare_scoring_dataset(dataset.add_column(ROW_ID, list(range(len(dataset)))))
    rows = sorted(prepared, key=lambda r: r[ROW_ID])
    return np.array(literal_loop_scores(trainer.model, rows, expected_parts(arch, trainer.model.config)))


def rel_err(got, ref):
    return float(np.max(np.abs(np.asarray(got) - ref) / np.abs(ref)))


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_default_score_equals_literal_loop_float64(arch, tmp_path):
    trainer, dataset = make_trainer(arch, torch.float64, tmp_path)
    scored = trainer.score()
    assert scored["resonance_status"] == ["ok"] * N_ROWS
    reference = oracle(trainer, dataset, arch)
    assert rel_err(scored["resonance"], reference) <= FLOAT32_INSIDE.get(arch, 1e-9)
    if arch in FLOAT32_INSIDE and arch != "nemotron_h":
        trainer.args.resonance_batch_size = 1
        assert rel_err(trainer.score()["resonance"], reference) <= 1e-9
    tensors = [t["tensor"] for t in trainer.resonance_provenance()["target_tensors"]]
    assert tensors == [part.param for part in expected_parts(arch, trainer.model.config)]


@pytest.mark.parametrize("arch", ["gpt2", "phi3", "qwen3_moe", "gpt_oss", "gemma4"])
def test_default_score_equals_literal_loop_float32(arch, tmp_path):
    trainer, dataset = make_trainer(arch, torch.float32, tmp_path)  # MoE: transformers' default expert kernel
    assert rel_err(trainer.score()["resonance"], oracle(trainer, dataset, arch)) <= 1e-5


def test_vlm_trains_as_sft_trainer_and_scores(tmp_path):
    folder = cached_tiny_model(arch="gemma4")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dataset = make_math_problems(8, seed=1)
    common = dict(report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, max_steps=2, seed=0)
    common.update(per_device_train_batch_size=4, logging_steps=1, save_strategy="no")
    runs = {}
    for name, trainer_cls, config_cls, extra in [
        ("sft", SFTTrainer, SFTConfig, {}),
        ("reso", ResonanceTrainer, ResonanceConfig, {"resonance_when": "before_train", "resonance_resume": False}),
    ]:
        model = AutoModelForCausalLM.from_pretrained(folder)
        args = config_cls(str(tmp_path / name), **common, **extra)
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        if name == "reso":
            reference = oracle(trainer, dataset, "gemma4")
        trainer.train()
        runs[name] = ([h["loss"] for h in trainer.state.log_history if "loss" in h], trainer.model.state_dict())
    (sft_losses, sft_weights), (reso_losses, reso_weights) = runs["sft"], runs["reso"]
    assert len(sft_losses) == 2 and reso_losses == sft_losses
    assert all(torch.equal(sft_weights[k], reso_weights[k]) for k in sft_weights)
    assert rel_err(trainer.scored_dataset["resonance"], reference) <= 1e-5  # float32, scored before training
    assert not any("vision_tower" in t.name for t in trainer.resonance_targets)


@pytest.mark.parametrize("arch", ["gpt2", "phi3", "qwen3_moe", "gpt_oss"])
def test_sgd_transform_equals_literal_loop(arch, tmp_path):
    trainer, dataset = make_trainer(arch, torch.float64, tmp_path, resonance_optimizer="sgd", resonance_lr=1e-2)
    prepared = trainer.prepare_scoring_dataset(dataset.add_column(ROW_ID, list(range(len(dataset)))))
    rows = sorted(prepared, key=lambda r: r[ROW_ID])
    parts = expected_parts(arch, trainer.model.config)
    reference = np.array(literal_loop_scores(trainer.model, rows, parts, optimizer="sgd", lr=1e-2))
    assert rel_err(trainer.score()["resonance"], reference) <= 1e-9


def test_lora_on_a_fused_gate_up_scores_the_up_rows_of_lora_b(tmp_path):
    """Phi-3 with LoRA on `gate_up_proj`: A is shared by gate and up, B's up rows are the up half's adapter."""
    folder = cached_tiny_model(arch="phi3")
    torch.manual_seed(0)
    lora = LoraConfig(r=4, target_modules=["gate_up_proj"], lora_dropout=0.0, init_lora_weights=False)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64), lora)
    args = ResonanceConfig(str(tmp_path), report_to="none", use_cpu=True, disable_tqdm=True, resonance_resume=False)
    dataset = make_math_problems(N_ROWS, seed=5, flaw_rate=0.5)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    trainer = ResonanceTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    inter = model.config.intermediate_size
    up = slice(inter, 2 * inter)
    assert [t.rows for t in trainer.resonance_targets] == [None, up] * 3
    prefix = "base_model.model.model.layers"
    parts = []
    for i in LAST3:
        parts.append(TensorPart(f"{prefix}.{i}.mlp.gate_up_proj.lora_A.default.weight"))
        parts.append(TensorPart(f"{prefix}.{i}.mlp.gate_up_proj.lora_B.default.weight", (up,)))
    prepared = trainer.prepare_scoring_dataset(dataset.add_column(ROW_ID, list(range(len(dataset)))))
    rows = sorted(prepared, key=lambda r: r[ROW_ID])
    assert rel_err(trainer.score()["resonance"], np.array(literal_loop_scores(trainer.model, rows, parts))) <= 1e-9


@pytest.mark.parametrize("arch", ["gpt2", "phi3", "gemma3"])
def test_inflight_equals_score_on_conv1d_fused_and_vlm_targets(arch, tmp_path):
    """lr 0: every step sees the initial state. TRL's fused LM head takes log-probs in float32, hence 1e-5."""
    trainer, _ = make_trainer(
        arch, torch.float64, tmp_path, learning_rate=0.0, num_train_epochs=1, per_device_train_batch_size=2,
        save_strategy="no", resonance_when="inflight",
    )  # fmt: skip
    reference = np.array(trainer.score()["resonance"])
    trainer.train()
    assert rel_err(trainer.scored_dataset["resonance_epoch0"], reference) <= 1e-5


def test_inflight_refuses_fused_experts(tmp_path):
    with pytest.raises(ValueError, match=r"^`resonance_when='inflight'` cannot score fused 3-D expert weights"):
        make_trainer("mixtral", torch.float32, tmp_path, resonance_when="inflight", router_aux_loss_coef=0.0)


def test_provenance_names_the_scored_tensors(tmp_path):
    trainer, _ = make_trainer("qwen2_moe", torch.float32, tmp_path)
    scoring = read_provenance(trainer.score())["scoring"]
    assert scoring["modules"] == ["mlp.experts", "mlp.shared_expert.up_proj", "mlp.up_proj"]
    assert scoring["modules_source"] == "up-projection registry: qwen2_moe" and scoring["layers"] == [1, 2, 3]
    assert scoring["target_tensors"][0] == {
        "tensor": "model.layers.1.mlp.experts.gate_up_proj",
        "shape": [4, 64, 64],
        "scored_shape": [128, 64],  # 4 experts x their 32 up rows
        "rows": "32:64:1",
        "transposed": False,
        "per_sample_gradient": "autograd",
    }
    trainer, _ = make_trainer("gpt2", torch.float32, tmp_path, resonance_modules=["mlp.c_fc"])
    scoring = read_provenance(trainer.score())["scoring"]
    assert scoring["modules_source"] == "resonance_modules"
    assert scoring["target_tensors"][2] == {
        "tensor": "transformer.h.3.mlp.c_fc.weight",
        "shape": [64, 128],
        "scored_shape": [128, 64],
        "rows": None,
        "transposed": True,
        "per_sample_gradient": "hooks",
    }
