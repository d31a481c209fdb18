"""Which tensors a resonance score is computed over.

A target is one weight matrix that gets a per-sample delta: a selected module's weight (paper mode, `"weights"`),
or the `lora_A` / `lora_B` linears of a PEFT LoRA layer (`"lora"`). By default (`resonance_modules=None`) the
modules are the MLP up-projection of the model's family (`architectures.UP_PROJECTIONS`), in the last n decoder
layers that have one; an explicit list selects by module-name suffix in the last n decoder layers. Only the
language model's decoder layers are searched (never a VLM's vision tower). Errors list what the model does have.

Every target is seen through the [out, in] matrix the engine scores (`Target.matrix`): transformers' `Conv1D`
stores its weight transposed, a fused [gate; up] linear is scored on its up rows, and fused 3-D expert weights on
every expert's up rows, stacked. Linear-like targets get their per-sample gradients from hooks (inputs and output
gradients); 3-D expert weights, which no module call separates, from one autograd pass per sample.

Mixture-of-experts: the scored tensor is the layer's whole expert up-projection (plus a shared expert's, where
the family has one), never silently less. Each sample's gradient is exact and non-zero only on the experts its
tokens were routed to; the others get the weight-decay term alone (-lr wd W under AdamW), exactly what the real
optimizer step of the literal loop does to them. The cost is one extra backward pass per sample and a
[batch, experts * out, in] gradient per expert tensor: lower `resonance_batch_size` for a large MoE.
"""

import re
import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from .architectures import (
    EXPERTS,
    GATE_UP,
    experts_up,
    is_conv1d,
    is_fused_experts,
    language_model_prefix,
    model_types,
    up_projection_entries,
)


_LAYER_INDEX = re.compile(r"\.(\d+)\.")


@dataclass
class Target:
    """One scored weight. `module` computes `y = x W^T (+ b)` over `matrix` = W; `role` says what W is."""

    name: str  # e.g. "model.layers.23.mlp.up_proj" (a module) or "model.layers.3.mlp.experts.gate_up_proj"
    module: nn.Module
    layer: int
    role: str  # "weight" | "lora_A" | "lora_B"
    group: str  # module the delta belongs to (LoRA A and B of one layer share a group)
    scaling: float = 1.0  # LoRA scaling s (only meaningful for lora_B)
    param_name: str = "weight"  # the parameter of `module` that is scored
    transposed: bool = False  # stored [in, out] (Conv1D; GPT-OSS experts): the matrix is its transpose
    rows: slice | None = None  # rows of the [out, in] matrix that are scored (a fused projection's up part)
    per_sample_autograd: bool = False  # 3-D expert weights: per-sample gradients by autograd, not hooks

    @property
    def weight(self) -> nn.Parameter:
        """The parameter itself (its own layout): for requires_grad, optimizer state, dtype and device."""
        return getattr(self.module, self.param_name)

    @property
    def tensor_name(self) -> str:
        return self.name if self.per_sample_autograd else f"{self.name}.{self.param_name}"

    def as_matrix(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor`, shaped like the parameter (with any leading batch dims), as the scored [out, in] matrix.

        3-D expert weights come out as [experts * out, in] (every expert's scored rows, expert by expert).
        """
        if self.transposed:
            tensor = tensor.transpose(-1, -2)
        if self.rows is not None:
            tensor = tensor[..., self.rows, :]
        if self.weight.dim() == 3:
            tensor = tensor.flatten(-3, -2)
        return tensor

    @property
    def matrix(self) -> torch.Tensor:
        """The scored [out, in] matrix (detached)."""
        return self.as_matrix(self.weight.detach())

    def describe(self) -> dict:
        """Which tensor, and which part of it, is scored (for provenance)."""
        rows = None if self.rows is None else f"{self.rows.start or 0}:{self.rows.stop}:{self.rows.step or 1}"
        return {
            "tensor": self.tensor_name,
            "shape": list(self.weight.shape),
            "scored_shape": list(self.matrix.shape),
            "rows": rows,
            "transposed": self.transposed,
            "per_sample_gradient": "autograd" if self.per_sample_autograd else "hooks",
        }


def is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The transformers model under DDP / PEFT wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP, DataParallel
        model = model.module
    if is_peft_model(model):
        model = model.get_base_model()
    return model


def _num_layers(model: nn.Module) -> int | None:
    config = getattr(unwrap_model(model), "config", None)
    if config is None:
        return None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text_config, "num_hidden_layers", None)


def _is_lora_layer(module: nn.Module) -> bool:
    return hasattr(module, "lora_A") and hasattr(module, "lora_B") and hasattr(module, "base_layer")


def _is_4bit(module: nn.Module) -> bool:
    return type(module).__name__ in ("Linear4bit", "Linear8bitLt")


def _is_scorable(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Linear)
        or is_conv1d(module)
        or is_fused_experts(module)
        or _is_lora_layer(module)
        or _is_4bit(module)
    )


def decoder_modules(model: nn.Module) -> list[tuple[str, str, nn.Module, int]]:
    """(qualified name, suffix inside its layer, module, layer) of every module in the language model's
    numbered decoder layers; LoRA internals are skipped (a LoRA layer stands for its base layer)."""
    prefix = language_model_prefix(model, unwrap_model(model))
    prefix = f"{prefix}." if prefix else ""
    out = []
    for name, module in model.named_modules():
        if not name.startswith(prefix) or "lora_" in name or name.endswith(".base_layer"):
            continue
        match = _LAYER_INDEX.search(f".{name[len(prefix) :]}.")
        if match:
            suffix = f".{name[len(prefix) :]}."[match.end() :].strip(".")
            if suffix:
                out.append((name, suffix, module, int(match.group(1))))
    return out


def candidate_module_names(model: nn.Module) -> list[str]:
    """Distinct suffixes of the scorable modules inside the decoder layers (what `resonance_modules` can name)."""
    names = Counter(suffix for _, suffix, module, _ in decoder_modules(model) if _is_scorable(module))
    return sorted(names)


def resolve_target_kind(model: nn.Module, target: str, selected: dict[str, nn.Module] | None = None) -> str:
    """'auto' -> 'lora' for a PEFT model whose LoRA adapters cover every `selected` module (name -> module), else
    'weights' (the paper's score, with a one-line notice for a PEFT model); checks that 'lora' has adapters."""
    if target == "auto":
        if not is_peft_model(model):
            return "weights"
        uncovered = [name for name, module in (selected or {}).items() if not _is_lora_layer(module)]
        if not uncovered:
            return "lora"
        configs = model.peft_config.values()
        methods = "/".join(sorted({str(getattr(c.peft_type, "value", c.peft_type)) for c in configs}))
        more = f" (and {len(uncovered) - 1} more)" if len(uncovered) > 1 else ""
        prompt = any(getattr(c, "is_prompt_learning", False) for c in configs)
        warnings.warn(
            f"resonance_target='auto': the {methods} adapters do not cover {uncovered[0]}{more}; scoring the base "
            f"weights (the paper's score){', on a forward without the virtual tokens' if prompt else ''}. "
            "Set resonance_target='weights' to silence this.",
            UserWarning,
            stacklevel=2,
        )
        return "weights"
    if target == "lora" and not is_peft_model(model):
        raise ValueError(
            "`resonance_target='lora'` needs a PEFT model (pass `peft_config=` to the trainer or a `PeftModel`); "
            "this model has no adapters. Use `resonance_target='weights'` to score the base weights."
        )
    return target


def _suffix_matches(suffix: str, pattern: str) -> bool:
    return suffix == pattern or suffix.endswith("." + pattern)


def find_targets(
    model: nn.Module, modules: list[str] | None, last_n_layers: int | None, target: str = "auto"
) -> list[Target]:
    """The scored tensors of `model`, lowest layer first.

    `modules=None` (or `["auto"]`): the family's up-projection (`UP_PROJECTIONS`) in the last `last_n_layers`
    decoder layers that have one. Otherwise the modules whose names end with one of `modules`, in the last
    `last_n_layers` decoder layers. Raises a ValueError naming what matched nothing and listing the candidates.
    """
    num_layers = _num_layers(model)
    if last_n_layers is not None and num_layers and last_n_layers > num_layers:
        raise ValueError(
            f"`resonance_last_n_layers={last_n_layers}` but {type(unwrap_model(model)).__name__} has {num_layers} "
            f"decoder layers: use 1 to {num_layers}, or None for every layer."
        )
    found = _default_modules(model, last_n_layers) if modules in (None, ["auto"]) else None
    if found is None:
        found = _explicit_modules(model, modules, last_n_layers)
    kind = resolve_target_kind(model, target, {name: module for name, module, _, _ in found})
    targets: list[Target] = []
    for name, module, layer, part in sorted(found, key=lambda entry: (entry[2], entry[0])):
        targets.extend(_targets_of(name, module, layer, kind, part))
    for target in targets:
        _check_whole(target)
    return targets


def _default_modules(model: nn.Module, last_n_layers: int | None) -> list[tuple[str, nn.Module, int, str]]:
    model_type, entries = up_projection_entries(unwrap_model(model).config)
    found = [
        (name, module, layer, part)
        for name, suffix, module, layer in decoder_modules(model)
        for pattern, part in entries
        if _suffix_matches(suffix, pattern)
    ]
    if not found:
        known = f"the {model_type!r} entry" if model_type else "the generic default"
        raise ValueError(
            f"No default up-projection for {type(unwrap_model(model)).__name__} (model types "
            f"{model_types(unwrap_model(model).config)}): {known} {[p for p, _ in entries]} matched no module inside its decoder "
            f"layers. Set `resonance_modules` to some of: {candidate_module_names(model)}."
        )
    layers = sorted({layer for _, _, layer, _ in found})
    keep = set(layers if last_n_layers is None else layers[-last_n_layers:])
    return [entry for entry in found if entry[2] in keep]


def _explicit_modules(model, modules: list[str], last_n_layers) -> list[tuple[str, nn.Module, int, str]]:
    matched: dict[str, list] = {pattern: [] for pattern in modules}
    for name, suffix, module, layer in decoder_modules(model):
        for pattern in modules:
            if _suffix_matches(suffix, pattern):
                part = EXPERTS if is_fused_experts(module) else "linear"
                matched[pattern].append((name, module, layer, part))
    missing = [pattern for pattern, found in matched.items() if not found]
    if missing:
        raise ValueError(
            f"`resonance_modules` {missing} matched no module inside a numbered decoder layer of "
            f"{type(unwrap_model(model)).__name__}. Candidates: {candidate_module_names(model)}."
        )
    found = [entry for entries in matched.values() for entry in entries]
    num_layers = _num_layers(model) or (max(entry[2] for entry in found) + 1)
    if last_n_layers is None:
        return found
    first = max(num_layers - last_n_layers, 0)
    kept = [entry for entry in found if entry[2] >= first]
    if not kept:
        raise ValueError(
            f"`resonance_modules` {modules} are only in decoder layers {sorted({e[2] for e in found})}, none of "
            f"them among the last {last_n_layers} of {num_layers} (`resonance_last_n_layers`)."
        )
    return kept


def _check_whole(target: Target) -> None:
    weight = target.weight
    module = target.module
    if isinstance(module, nn.Linear):
        full = (module.out_features, module.in_features)
    elif is_conv1d(module):
        full = (module.nx, module.nf)
    else:
        full = tuple(weight.shape) if weight.numel() else None
    if tuple(weight.shape) != full or type(weight).__name__ == "DTensor":
        raise ValueError(
            f"{target.tensor_name} is sharded ({tuple(weight.shape)} for a {full} tensor: FSDP or DeepSpeed "
            "ZeRO-3); per-sample deltas need whole weights. Score with DDP or a single process."
        )


def _targets_of(name: str, module: nn.Module, layer: int, kind: str, part: str = "linear") -> list[Target]:
    if part == EXPERTS:
        if kind != "weights":
            raise ValueError(
                f"`resonance_target='lora'` but {name} holds fused 3-D expert weights, which carry no LoRA adapter "
                "here; score them with `resonance_target='weights'`."
            )
        up = experts_up(name, module)
        return [
            Target(
                f"{name}.{up.param_name}",
                module,
                layer,
                "weight",
                group=name,
                param_name=up.param_name,
                transposed=up.transposed,
                rows=up.rows,
                per_sample_autograd=True,
            )
        ]
    base = getattr(module, "base_layer", module)  # under any PEFT tuner layer (LoRA, IA3, LoHa...)
    rows = None
    if part == GATE_UP:
        out = base.out_features if isinstance(base, nn.Linear) else base.weight.shape[0]
        rows = slice(out // 2, out)  # [gate; up]: the up half
    if kind == "weights":
        if _is_4bit(base):
            raise ValueError(
                f"{name} is quantized ({type(base).__name__}); its weights cannot be scored. "
                "Use `resonance_target='lora'` with a LoRA adapter on this module."
            )
        if not (isinstance(base, nn.Linear) or is_conv1d(base)):
            raise ValueError(f"{name} is a {type(base).__name__}, not a linear layer; pick linear modules.")
        return [Target(name, base, layer, "weight", group=name, transposed=is_conv1d(base), rows=rows)]
    if not _is_lora_layer(module):
        raise ValueError(
            f"`resonance_target='lora'` but {name} has no LoRA adapter. Add it to the LoRA `target_modules` "
            "or score `resonance_target='weights'`."
        )
    if getattr(module, "merged", False):
        raise ValueError(f"The LoRA adapter of {name} is merged into the base weights; unmerge it to score it.")
    active = [a for a in module.active_adapters if a in module.lora_A]
    if len(active) != 1:
        raise ValueError(f"{name} has {len(active)} active LoRA adapters ({active}); scoring needs exactly one.")
    adapter = active[0]
    if adapter in getattr(module, "lora_variant", {}):
        variant = type(module.lora_variant[adapter]).__name__
        raise ValueError(
            f"{name} uses a LoRA variant ({variant}, e.g. DoRA) whose forward does not go through lora_A/lora_B "
            "as plain linears; only vanilla LoRA adapters can be scored."
        )
    scaling = float(module.scaling[adapter])
    return [
        Target(f"{name}.lora_A.{adapter}", module.lora_A[adapter], layer, "lora_A", group=name, scaling=scaling),
        Target(
            f"{name}.lora_B.{adapter}", module.lora_B[adapter], layer, "lora_B", group=name, scaling=scaling, rows=rows
        ),
    ]


def lora_dropout_modules(targets: list[Target], model: nn.Module) -> list[nn.Module]:
    """The dropout modules feeding the LoRA targets (they must be inactive while capturing)."""
    modules = dict(model.named_modules())
    out = []
    for target in targets:
        if target.role == "lora_A":
            layer = modules[target.group]
            adapter = target.name.rsplit(".", 1)[-1]
            out.append(layer.lora_dropout[adapter])
    return out


def scored_tensors(model: nn.Module, target: str, modules: list[str] | None, targets: list[Target]) -> dict:
    """Provenance of what was scored: the target kind, module suffixes and where they came from
    (`resonance_modules` or the registry entry of the model's family), layers, target names, and each tensor's
    shape, scored rows and transposition."""
    suffixes = []
    for scored in targets:
        matches = list(_LAYER_INDEX.finditer(f".{scored.group}."))
        suffixes.append(f".{scored.group}."[matches[-1].end() :].strip(".") if matches else scored.group)
    if modules not in (None, ["auto"]):
        source = "resonance_modules"
    else:
        model_type, _ = up_projection_entries(unwrap_model(model).config)
        source = f"up-projection registry: {model_type}" if model_type else "generic default (not in the registry)"
    return {
        "target": "weights" if all(t.role == "weight" for t in targets) else "lora",  # what was scored
        "modules": list(dict.fromkeys(suffixes)),
        "modules_source": source,
        "layers": sorted({t.layer for t in targets}),
        "target_names": [t.name for t in targets],
        "target_tensors": [t.describe() for t in targets],
    }


def vocab_size(model: nn.Module) -> int | None:
    """Rows of the input embeddings: the token ids the model has."""
    return getattr(unwrap_model(model).get_input_embeddings(), "num_embeddings", None)
