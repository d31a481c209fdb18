"""Refuse a model with non-finite weights before scoring it.

A NaN or inf anywhere the forward reads (embeddings, norms, attention, the head, a buffer such as rotary
frequencies) turns every score into NaN or inf; scoring such a model for hours would only hide that. One pass over
the floating-point tensors costs about what one forward costs, and names the first bad tensor.
"""

import torch
from torch import nn


def first_nonfinite_tensor(model: nn.Module) -> tuple[str, int] | None:
    """(name, count of non-finite entries) of the first parameter or buffer holding NaN/inf, or None."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if not torch.is_floating_point(tensor) or tensor.device.type == "meta":
            continue  # quantized storage (uint8/int8) and not-yet-loaded weights have no NaN to find
        finite = torch.isfinite(tensor.detach())
        if not bool(finite.all()):
            return name, int((~finite).sum())
    return None


def check_finite_weights(model: nn.Module) -> None:
    """Raise a ValueError naming the first parameter or buffer of `model` that holds NaN or inf."""
    bad = first_nonfinite_tensor(model)
    if bad is not None:
        name, count = bad
        raise ValueError(
            f"the model has non-finite weights: {name} holds {count} NaN/inf entries, so every score would be NaN. "
            "Fix or reload the checkpoint before scoring."
        )
