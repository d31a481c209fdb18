"""Which tensors make a model unscoreable: any NaN/inf in a parameter; in a buffer, a NaN or an inf beside finite
entries (a buffer that is +-inf throughout is a bound, as Gemma-4's vision clamps keep)."""

import math

import torch
from torch import nn

from resofilter_hf.engine.finite import first_nonfinite_tensor


def _model():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model.register_buffer("input_min", torch.full((1,), -math.inf))  # a clamp bound
    model.register_buffer("inv_freq", torch.arange(1.0, 5.0))
    model.register_buffer("ids", torch.arange(4))  # integer: nothing to check
    return model


def test_a_clean_model_and_bounds_pass():
    assert first_nonfinite_tensor(_model()) is None


def test_nan_or_inf_in_a_parameter_is_named_with_its_count():
    model = _model()
    with torch.no_grad():
        model[1].weight[0, 1] = math.nan
        model[1].weight[1, 2] = -math.inf
    assert first_nonfinite_tensor(model) == ("1.weight", 2)


def test_a_buffer_with_a_hole_is_named():
    model = _model()
    model.inv_freq[2] = math.inf
    assert first_nonfinite_tensor(model) == ("inv_freq", 1)
    model = _model()
    model.input_min[0] = math.nan
    assert first_nonfinite_tensor(model) == ("input_min", 1)
