"""Refuse a model with non-finite weights before scoring it.

A NaN or inf anywhere the forward reads (embeddings, norms, attention, the head, a buffer such as rotary
frequencies) turns every score into NaN or inf; scoring such a model for hours would only hide that. One pass over
the floating-point tensors (about 3 s per billion fp32 entries on one CPU thread) names the first bad tensor.
"""

import torch
from torch import nn


CHUNK = 2**24  # entries checked at once


def first_nonfinite_tensor(model: nn.Module) -> tuple[str, int] | None:
    """(name, count of bad entries) of the first parameter or buffer holding NaN/inf, or None.

    A buffer that is +-inf throughout is a bound, not damage (Gemma-4's vision clamps keep `input_min = -inf`),
    so buffers are refused for a NaN, or for an inf beside finite entries (a rotary table with a hole)."""
    tensors = [(name, p, False) for name, p in model.named_parameters()]
    tensors += [(name, b, True) for name, b in model.named_buffers()]
    for name, tensor, is_buffer in tensors:
        if not torch.is_floating_point(tensor) or tensor.device.type == "meta" or not tensor.numel():
            continue  # quantized storage (uint8/int8) and not-yet-loaded weights have no NaN to find
        pieces = tensor.detach().reshape(-1).split(CHUNK)  # bounded temporaries, whatever the tensor's size
        # max |x| is NaN or inf exactly when some entry is (NaN propagates through amax); twice as fast as isfinite
        if all(bool(piece.abs().amax().isfinite()) for piece in pieces):
            continue
        nan = sum(int(piece.isnan().sum()) for piece in pieces)
        finite = sum(int(piece.isfinite().sum()) for piece in pieces)
        if not is_buffer or nan or finite:
            return name, tensor.numel() - finite
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
