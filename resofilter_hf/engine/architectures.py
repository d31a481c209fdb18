"""Where each model family keeps the MLP up-projection the paper scores, and where its decoder layers are.

`UP_PROJECTIONS` maps `config.model_type` (the text config's, for a vision-language model) to the module-name
suffixes, inside one decoder layer, that make up that layer's up-projection, each with the part of the module
that is "up" (as PEFT maps default LoRA targets per model type):

- `LINEAR`: the whole weight of an `nn.Linear`, or of transformers' `Conv1D` (GPT-2), which stores it [in, out];
- `GATE_UP`: a fused linear computing [gate; up] (Phi-3's `gate, up = y.chunk(2, -1)`): its second half of rows;
- `EXPERTS`: a fused-experts module with 3-D weights (transformers' `use_experts_implementation`): the up part of
  every expert's `gate_up_proj` (second half, or the odd columns of an interleaved, transposed layout as GPT-OSS
  stores it), or its `up_proj` when the experts have no gate.

A layer's up-projection is every listed suffix that layer has: an MoE layer its routed experts and its shared
expert, a dense layer of the same model its MLP, a hybrid model's attention or Mamba layers nothing. Only the
language model's decoder is searched, so a VLM's vision tower is never scored.
"""

from dataclasses import dataclass

from torch import nn


LINEAR, GATE_UP, EXPERTS = "linear", "gate_up", "experts"

_MLP_UP = (("mlp.up_proj", LINEAR),)
UP_PROJECTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    **dict.fromkeys(
        (
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma2",
            "gemma3",
            "gemma3_text",
            "olmo",
            "olmo2",
            "cohere",
            "cohere2",
            "granite",
            "smollm3",
        ),
        _MLP_UP,
    ),
    "gemma4_text": (("mlp.up_proj", LINEAR), ("experts", EXPERTS)),  # MoE layers add experts beside the MLP
    "gpt_neox": (("mlp.dense_h_to_4h", LINEAR),),
    "gpt2": (("mlp.c_fc", LINEAR),),  # Conv1D
    "phi3": (("mlp.gate_up_proj", GATE_UP),),
    "lfm2": (("feed_forward.w3", LINEAR),),  # w2(silu(w1 x) * w3 x)
    "nemotron_h": (("mixer.up_proj", LINEAR), ("mixer.experts", EXPERTS), ("mixer.shared_experts.up_proj", LINEAR)),
    "qwen2_moe": (("mlp.experts", EXPERTS), ("mlp.shared_expert.up_proj", LINEAR), ("mlp.up_proj", LINEAR)),
    "qwen3_moe": (("mlp.experts", EXPERTS), ("mlp.up_proj", LINEAR)),
    "mixtral": (("mlp.experts", EXPERTS),),
    "gpt_oss": (("mlp.experts", EXPERTS),),
}


def model_types(config) -> list[str]:
    """The model types to look up, most specific first: the text config's, then the model's own."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return list(
        dict.fromkeys(t for t in (getattr(text, "model_type", None), getattr(config, "model_type", None)) if t)
    )


def up_projection_entries(config) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """(the registry key used, its entries); a type not in the registry gets `mlp.up_proj` (key None)."""
    for model_type in model_types(config):
        if model_type in UP_PROJECTIONS:
            return model_type, UP_PROJECTIONS[model_type]
    return None, _MLP_UP


def language_model_prefix(model: nn.Module, base: nn.Module) -> str:
    """Qualified name (in `model`) of the language model's decoder, "" if it cannot be told apart."""
    try:
        decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    except (AttributeError, NotImplementedError, ValueError):
        decoder = None
    if not isinstance(decoder, nn.Module):
        return ""
    for name, module in model.named_modules():
        if module is decoder:
            return name
    return ""


def is_conv1d(module: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2 family): y = x W + b with W stored [in, out]."""
    return type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None and hasattr(module, "nf")


def is_fused_experts(module: nn.Module) -> bool:
    """A module holding every expert's weights as one 3-D parameter."""
    return any(
        isinstance(getattr(module, name, None), nn.Parameter) and getattr(module, name).dim() == 3
        for name in ("gate_up_proj", "up_proj")
    )


@dataclass(frozen=True)
class ExpertsUp:
    """Which part of a fused-experts module is the up-projection, in each expert's [out, in] view."""

    param_name: str
    transposed: bool  # stored [experts, in, out]
    rows: slice | None  # rows of each expert's [out, in] view; None: all


def experts_up(name: str, module: nn.Module) -> ExpertsUp:
    has_gate = bool(getattr(module, "has_gate", isinstance(getattr(module, "gate_up_proj", None), nn.Parameter)))
    param_name = "gate_up_proj" if has_gate else "up_proj"
    weight = getattr(module, param_name, None)
    if not isinstance(weight, nn.Parameter) or weight.dim() != 3:
        raise ValueError(
            f"{name} ({type(module).__name__}) has no 3-D `{param_name}` parameter, so its experts' up-projection "
            "cannot be located; set `resonance_modules` to linear modules of this model."
        )
    transposed = bool(getattr(module, "is_transposed", False))
    out = weight.shape[-1] if transposed else weight.shape[-2]
    if not has_gate:
        rows = None
    elif getattr(module, "is_concatenated", True):
        rows = slice(out // 2, out)  # [gate; up]
    else:
        rows = slice(1, out, 2)  # gate0, up0, gate1, up1, ...
    return ExpertsUp(param_name, transposed, rows)
