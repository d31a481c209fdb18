"""Which tensors are scored: the up-projection registry, fused / transposed / 3-D targets, VLM scoping, errors."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from resofilter_hf import ResonanceConfig
from resofilter_hf.engine.architectures import UP_PROJECTIONS, up_projection_entries
from resofilter_hf.engine.capture import GradientCapture
from resofilter_hf.engine.deltas import ScoreSpec, StepTransform
from resofilter_hf.engine.inflight import InflightRecorder
from resofilter_hf.engine.targets import decoder_modules, find_targets
from resofilter_hf.toy import cached_tiny_model
from resofilter_hf.toy.model import ARCHITECTURES


def tiny(arch: str, dtype=torch.float32):
    extra = {"experts_implementation": "eager"} if dtype == torch.float64 else {}  # grouped-mm has no float64
    return AutoModelForCausalLM.from_pretrained(cached_tiny_model(arch=arch), dtype=dtype, **extra)


@pytest.mark.parametrize("model_type", sorted(UP_PROJECTIONS))
def test_every_registry_entry_matches_a_real_module(model_type):
    assert model_type in ARCHITECTURES, f"no tiny {model_type} model to check the registry entry against"
    model = tiny(model_type)
    assert model_type in (model.config.model_type, model.config.get_text_config().model_type)
    suffixes = [suffix for _, suffix, _, _ in decoder_modules(model)]
    for pattern, _ in UP_PROJECTIONS[model_type]:
        assert any(s == pattern or s.endswith("." + pattern) for s in suffixes), f"{model_type}: {pattern}"


@pytest.mark.parametrize("arch", ["phi3", "qwen3_moe", "mixtral", "qwen2_moe", "gemma4_text"])
def test_scored_rows_are_the_up_projection(arch):
    """A gated MLP computes down(act(gate) * up): doubling the scored rows doubles its output exactly, doubling
    the other rows does not. So the scored rows are `up`, not `gate`."""
    torch.manual_seed(0)
    model = tiny(arch, torch.float64)
    target = [t for t in find_targets(model, None, 3, "weights") if t.rows is not None][-1]
    x = torch.randn(5, model.config.get_text_config().hidden_size, dtype=torch.float64)
    if target.per_sample_autograd:  # the experts module itself: every token to two experts, weight 1
        block = target.module
        index = torch.stack([torch.arange(5) % block.num_experts, (torch.arange(5) + 1) % block.num_experts], 1)
        run = lambda: block(x, index, torch.ones(5, 2, dtype=torch.float64))  # noqa: E731
    else:
        block = dict(model.named_modules())[target.name.rsplit(".", 1)[0]]  # the MLP around gate_up_proj
        run = lambda: block(x)  # noqa: E731
    scored = torch.zeros(target.weight.shape[-2], dtype=torch.bool)
    scored[target.rows] = True
    with torch.no_grad():
        before = run()
        saved = target.weight.detach().clone()
        target.weight[..., scored, :] *= 2
        assert torch.allclose(run(), 2 * before, rtol=1e-12, atol=0)
        target.weight.copy_(saved)
        target.weight[..., ~scored, :] *= 2
        assert not torch.allclose(run(), 2 * before, rtol=1e-3, atol=0)


def test_gpt_oss_scores_the_interleaved_up_columns():
    """GPT-OSS: (up + 1) * glu(gate); up = -1 on the scored columns zeroes the expert, whatever the gate."""
    model = tiny("gpt_oss", torch.float64)
    target = find_targets(model, None, 3, "weights")[-1]
    assert target.transposed and target.per_sample_autograd
    gate_up = torch.randn(7, target.weight.shape[-1], dtype=torch.float64)
    scored = torch.zeros(target.weight.shape[-1], dtype=torch.bool)
    scored[target.rows] = True
    gate_up[:, scored] = -1.0
    assert target.module._apply_gate(gate_up).abs().max() == 0
    gate_up[:, scored] = 0.5
    assert target.module._apply_gate(gate_up).abs().max() > 0


def test_conv1d_matrix_is_the_transposed_weight():
    model = tiny("gpt2")
    target = find_targets(model, None, 3, "weights")[0]
    assert target.tensor_name == "transformer.h.1.mlp.c_fc.weight" and target.transposed
    assert torch.equal(target.matrix, target.weight.detach().T)
    assert target.describe()["scored_shape"] == list(target.weight.shape[::-1])


def test_vlm_search_skips_the_vision_tower():
    model = tiny("gemma4")
    names = [n for n, _ in model.named_modules() if n.endswith("mlp.up_proj")]
    assert any("vision_tower" in n for n in names)  # Gemma4ClippableLinear, not an nn.Linear
    for modules in (None, ["mlp.up_proj"]):
        targets = find_targets(model, modules, None, "weights")
        assert {t.layer for t in targets} == {0, 1, 2, 3}
        assert all(t.name.startswith("model.language_model.layers.") for t in targets)


def test_explicit_modules_work_as_before():
    model = tiny("llama")
    targets = find_targets(model, ["mlp.up_proj", "self_attn.v_proj"], 2, "weights")
    assert [t.name for t in targets] == [
        "model.layers.2.mlp.up_proj",
        "model.layers.2.self_attn.v_proj",
        "model.layers.3.mlp.up_proj",
        "model.layers.3.self_attn.v_proj",
    ]
    phi3 = find_targets(tiny("phi3"), ["mlp.gate_up_proj"], 1, "weights")  # named explicitly: the whole weight
    assert phi3[0].rows is None and phi3[0].matrix.shape == phi3[0].weight.shape


def test_default_modules_config():
    assert ResonanceConfig("out").resonance_modules is None
    assert ResonanceConfig("out", resonance_modules="auto").resonance_modules is None
    assert ResonanceConfig("out", resonance_modules="mlp.c_fc").resonance_modules == ["mlp.c_fc"]
    with pytest.raises(ValueError, match=r"`resonance_modules` must be None \('auto'\) or a non-empty list"):
        ResonanceConfig("out", resonance_modules=[])


def test_unknown_family_without_up_proj_names_the_candidates():
    model = tiny("gpt2")
    model.config.model_type = "my_gpt"  # a family the registry does not know, whose MLP is not `mlp.up_proj`
    assert up_projection_entries(model.config) == (None, (("mlp.up_proj", "linear"),))
    with pytest.raises(ValueError) as error:
        find_targets(model, None, 3, "weights")
    assert str(error.value) == (
        "No default up-projection for GPT2LMHeadModel (model types ['my_gpt']): the generic default "
        "['mlp.up_proj'] matched no module inside its decoder layers. Set `resonance_modules` to some of: "
        "['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']."
    )


def test_explicit_module_outside_the_last_layers():
    model = tiny("nemotron_h")  # mamba, mlp, attention, moe
    with pytest.raises(ValueError) as error:
        find_targets(model, ["mixer.up_proj"], 2, "weights")
    assert str(error.value) == (
        "`resonance_modules` ['mixer.up_proj'] are only in decoder layers [1], none of them among the last 2 of 4 "
        "(`resonance_last_n_layers`)."
    )


def test_expert_targets_refuse_lora_and_inflight():
    model = tiny("qwen3_moe")
    lora = get_peft_model(tiny("qwen3_moe"), LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(ValueError, match=r"model.layers.1.mlp.experts holds fused 3-D expert weights"):
        find_targets(lora, None, 3, "lora")
    targets = find_targets(model, None, 3, "weights")
    with pytest.raises(ValueError) as error:
        InflightRecorder(targets, ScoreSpec(StepTransform()))
    assert str(error.value).startswith(
        "`resonance_when='inflight'` cannot score fused 3-D expert weights (model.layers.1.mlp.experts.gate_up_proj "
        "and 1 more)"
    )


def test_expert_gradients_are_per_sample_autograd():
    """The capture's per-sample expert gradients equal autograd on each sample's loss alone (batch of 1)."""
    torch.manual_seed(0)
    model = tiny("qwen3_moe", torch.float64).eval()
    target = find_targets(model, None, 1, "weights")[0]
    ids = torch.randint(10, 200, (3, 9))
    for p in model.parameters():
        p.requires_grad_(False)
    target.weight.requires_grad_(True)

    def losses(input_ids):
        logits = model(input_ids=input_ids).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), input_ids[:, 1:], reduction="none")
        return nll.mean(1)

    with GradientCapture([target]) as capture:
        capture.backward(losses(ids), torch.ones(3, dtype=torch.bool))
        batched = capture.records[0].param_grads
    for i in range(3):
        (alone,) = torch.autograd.grad(losses(ids[i : i + 1])[0], [target.weight])
        assert torch.allclose(batched[i], target.as_matrix(alone), rtol=1e-10, atol=1e-14)
