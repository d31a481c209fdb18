"""Which tensors a resonance score is computed over.

A target is one `nn.Linear` whose weight gets a per-sample delta: the selected module itself (paper mode,
`"weights"`), or the `lora_A` / `lora_B` linears of a PEFT LoRA layer (`"lora"`). Selection is by module-name
suffix plus "last n decoder layers", with errors that list what the model does have.
"""

import re
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn


_LAYER_INDEX = re.compile(r"\.(\d+)\.")


@dataclass
class Target:
    """One scored weight: `module` computes `y = x W^T (+ b)`; `role` says what W is."""

    name: str  # qualified name of the scored weight's module, e.g. "model.layers.23.mlp.up_proj"
    module: nn.Linear
    layer: int
    role: str  # "weight" | "lora_A" | "lora_B"
    group: str  # module the delta belongs to (LoRA A and B of one layer share a group)
    scaling: float = 1.0  # LoRA scaling s (only meaningful for lora_B)

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight


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


def _layer_of(name: str) -> int | None:
    found = _LAYER_INDEX.findall(f".{name}.")
    return int(found[-1]) if found else None


def _is_lora_layer(module: nn.Module) -> bool:
    return hasattr(module, "lora_A") and hasattr(module, "lora_B") and hasattr(module, "base_layer")


def _is_4bit(module: nn.Module) -> bool:
    return type(module).__name__ in ("Linear4bit", "Linear8bitLt")


def candidate_module_names(model: nn.Module) -> list[str]:
    """Distinct suffixes of the linear layers inside numbered decoder layers (what `resonance_modules` can name)."""
    names = Counter()
    for name, module in model.named_modules():
        if "lora_" in name or name.endswith(".base_layer"):
            continue
        match = list(_LAYER_INDEX.finditer(f".{name}."))
        if match and (isinstance(module, nn.Linear) or _is_lora_layer(module) or _is_4bit(module)):
            suffix = f".{name}."[match[-1].end() :].strip(".")
            if suffix:
                names[suffix] += 1
    return sorted(names)


def resolve_target_kind(model: nn.Module, target: str) -> str:
    """'auto' -> 'lora' for a PEFT model, else 'weights'; checks that 'lora' has adapters to score."""
    if target == "auto":
        return "lora" if is_peft_model(model) else "weights"
    if target == "lora" and not is_peft_model(model):
        raise ValueError(
            "`resonance_target='lora'` needs a PEFT model (pass `peft_config=` to the trainer or a `PeftModel`); "
            "this model has no adapters. Use `resonance_target='weights'` to score the base weights."
        )
    return target


def find_targets(
    model: nn.Module, modules: list[str], last_n_layers: int | None, target: str = "auto"
) -> list[Target]:
    """The scored linears of `model`, lowest layer first.

    Raises a ValueError naming the suffixes that matched nothing and listing the model's candidates.
    """
    kind = resolve_target_kind(model, target)
    matched: dict[str, list[tuple[str, nn.Module, int]]] = {suffix: [] for suffix in modules}
    for name, module in model.named_modules():
        if "lora_" in name or name.endswith(".base_layer"):
            continue
        for suffix in modules:
            if name == suffix or name.endswith("." + suffix):
                layer = _layer_of(name)
                if layer is not None:
                    matched[suffix].append((name, module, layer))
    missing = [suffix for suffix, found in matched.items() if not found]
    if missing:
        raise ValueError(
            f"`resonance_modules` {missing} matched no module inside a numbered decoder layer of "
            f"{type(unwrap_model(model)).__name__}. Candidates: {candidate_module_names(model)}."
        )
    found = [entry for entries in matched.values() for entry in entries]
    num_layers = _num_layers(model) or (max(layer for _, _, layer in found) + 1)
    if last_n_layers is not None and last_n_layers > num_layers:
        raise ValueError(
            f"`resonance_last_n_layers={last_n_layers}` but {type(unwrap_model(model)).__name__} has {num_layers} "
            f"decoder layers: use 1 to {num_layers}, or None for every layer."
        )
    if last_n_layers is not None:
        first = max(num_layers - last_n_layers, 0)
        found = [entry for entry in found if entry[2] >= first]
    targets: list[Target] = []
    for name, module, layer in sorted(found, key=lambda entry: (entry[2], entry[0])):
        targets.extend(_targets_of(name, module, layer, kind))
    for target in targets:
        linear = target.module
        full = (linear.out_features, linear.in_features)
        if tuple(target.weight.shape) != full or type(target.weight).__name__ == "DTensor":
            raise ValueError(
                f"{target.name}.weight is sharded ({tuple(target.weight.shape)} for a {full} layer: FSDP or "
                "DeepSpeed ZeRO-3); per-sample deltas need whole weights. Score with DDP or a single process."
            )
    return targets


def _targets_of(name: str, module: nn.Module, layer: int, kind: str) -> list[Target]:
    if kind == "weights":
        base = module.base_layer if _is_lora_layer(module) else module
        if _is_4bit(base):
            raise ValueError(
                f"{name} is quantized ({type(base).__name__}); its weights cannot be scored. "
                "Use `resonance_target='lora'` with a LoRA adapter on this module."
            )
        if not isinstance(base, nn.Linear):
            raise ValueError(f"{name} is a {type(base).__name__}, not a linear layer; pick linear modules.")
        return [Target(name, base, layer, "weight", group=name)]
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
        Target(f"{name}.lora_B.{adapter}", module.lora_B[adapter], layer, "lora_B", group=name, scaling=scaling),
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
