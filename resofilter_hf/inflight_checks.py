"""Checks for in-flight scoring: the set-ups where a sample's own step cannot be read off the training pass
exactly are refused when the trainer is built, not at the end of training."""

import warnings

from datasets import Dataset
from torch import nn

from .config import ResonanceConfig
from .engine.targets import Target, lora_dropout_modules


def check_inflight_args(args: ResonanceConfig, train_dataset) -> None:
    """Refuse, at construction, the set-ups where per-sample in-flight capture would not be exact."""
    if not isinstance(train_dataset, Dataset):
        raise ValueError("`resonance_when='inflight'` needs a `datasets.Dataset` train set (row ids), not a stream.")
    if args.packing:
        raise ValueError(
            "`resonance_when='inflight'` cannot follow rows through packing: TRL's packing keeps only input_ids and "
            "labels, so a packed sample cannot be traced back to its row. Use `packing=False` (optionally with "
            "`padding_free=True`, which the capture separates by sequence boundaries), or score with "
            "`resonance_when='before_train'`/`'after_train'`."
        )
    if args.loss_type != "nll":
        raise ValueError(
            f"`resonance_when='inflight'` needs `loss_type='nll'`: with {args.loss_type!r} the per-token weights of "
            "the real loss are not a per-sample mean, so a sample's own gradient cannot be read off the step."
        )
    if args.gradient_checkpointing and (args.gradient_checkpointing_kwargs or {}).get("use_reentrant"):
        raise ValueError(
            "`resonance_when='inflight'` needs non-reentrant gradient checkpointing (reentrant checkpointing runs "
            "the forward without a graph, so the hooks see no gradient): set `gradient_checkpointing_kwargs="
            "{'use_reentrant': False}` or `gradient_checkpointing=False`."
        )


def check_inflight_model(model: nn.Module, targets: list[Target], aux_loss_enabled: bool = False) -> None:
    """Refuse a model whose in-flight capture would not be exact: LoRA dropout, virtual tokens, MoE aux loss."""
    dropouts = [m.p for m in lora_dropout_modules(targets, model) if getattr(m, "p", 0) > 0]
    if dropouts:
        raise ValueError(
            f"`resonance_when='inflight'` with LoRA dropout {dropouts[0]}: the captured step would depend on a "
            "random dropout mask and could not be reproduced. Set `lora_dropout=0` in the LoraConfig, or score "
            "with `resonance_when='before_train'`/`'after_train'` (scoring turns dropout off)."
        )
    peft = getattr(model, "active_peft_config", None)
    if getattr(peft, "is_prompt_learning", False):
        raise ValueError(
            f"`resonance_when='inflight'` with {peft.peft_type.value}: training prepends virtual tokens that the "
            "scoring forward leaves out. Score with `resonance_when='before_train'`/`'after_train'`."
        )
    if aux_loss_enabled:
        raise ValueError(
            "`resonance_when='inflight'` cannot separate a Mixture-of-Experts load-balancing loss per sample; "
            "set `router_aux_loss_coef=0.0` or score with `resonance_when='before_train'`."
        )


def warn_if_lora_b_is_zero(targets: list[Target]) -> None:
    """Scores of a fresh LoRA adapter rank rows by their lora_B gradients alone: say so."""
    if all(float(t.weight.abs().max()) == 0 for t in targets if t.role == "lora_B"):
        warnings.warn(
            "Every lora_B is zero (PEFT's default initialisation), so lora_A gets exactly zero gradient on the "
            "first step: A's delta is only its weight decay (-lr wd A), the same for every sample, and scores "
            "taken before training rank samples by their lora_B gradients alone. Score after some training "
            "(`resonance_when='after_train'`/`'inflight'`) or with `resonance_target='weights'` for the "
            "paper's score.",
            UserWarning,
            stacklevel=4,
        )
