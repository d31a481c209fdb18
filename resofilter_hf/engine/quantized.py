"""Keeping bitsandbytes 4-bit models trainable around eval-mode forwards on CPU.

bitsandbytes' CPU backend re-packs a `Linear4bit` weight for a faster inference kernel the first time it runs
in eval mode on an input that needs no gradient, and that kernel has no backward: from then on no gradient flows
through the layer, so LoRA adapters below it silently stop learning (only a UserWarning says so). Scoring runs
the model in eval mode, so it keeps these layers in training mode (their `training` flag only gates this
re-pack), and a model that was re-packed elsewhere is refused with a clear error rather than trained wrong.
"""

from contextlib import contextmanager

from torch import nn


def _is_4bit(module: nn.Module) -> bool:
    return type(module).__name__ == "Linear4bit"


def packed_4bit_modules(model: nn.Module) -> list[str]:
    """Names of the 4-bit linears whose weights bitsandbytes re-packed for its CPU inference kernel."""
    return [
        name
        for name, module in model.named_modules()
        if _is_4bit(module) and getattr(getattr(module.weight, "quant_state", None), "packing_format_for_cpu", False)
    ]


def check_not_repacked(model: nn.Module, when: str) -> None:
    packed = packed_4bit_modules(model)
    if packed:
        raise RuntimeError(
            f"{when}: bitsandbytes re-packed {len(packed)} 4-bit layers (e.g. {packed[0]}) for its CPU inference "
            "kernel, which has no backward, so no gradient reaches the LoRA adapters below them and they would "
            "silently stop learning (and score as zero). This happens after an eval-mode forward without gradients "
            "(model.eval() + torch.no_grad(), e.g. generate() or an evaluation outside ResonanceTrainer). Reload "
            "the 4-bit model, or run such forwards with the Linear4bit modules in training mode."
        )


@contextmanager
def cpu_4bit_repack_guard(model: nn.Module):
    """Within the block, every `Linear4bit` runs its forward in training mode (its flag only gates the re-pack)."""

    def before(module, args):
        module._resofilter_mode = module.training
        module.training = True

    def after(module, args, output):
        module.training = module.__dict__.pop("_resofilter_mode", module.training)

    handles = []
    for module in model.modules():
        if _is_4bit(module):
            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
