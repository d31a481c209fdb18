"""The private symbols behind `engine.compat`: present in the installed versions, and a loud error when not."""

import pytest

from resofilter_hf.engine import compat


@pytest.mark.parametrize("symbol", sorted(compat.PRIVATE_SYMBOLS))
def test_every_private_symbol_exists_in_the_installed_versions(symbol):
    assert callable(compat.lookup(symbol))


def test_a_missing_symbol_names_itself_and_the_versions(monkeypatch):
    import trl

    monkeypatch.delattr(trl.SFTTrainer, "_prepare_dataset")
    compat.lookup.cache_clear()
    try:
        with pytest.raises(compat.IncompatibleVersionError) as info:
            compat.check_private_symbols()
    finally:
        monkeypatch.undo()
        compat.lookup.cache_clear()
    message = str(info.value)
    assert "`trl.SFTTrainer._prepare_dataset`" in message
    assert "trl " in message and "transformers " in message and "torch " in message


def test_the_trainer_checks_before_building(monkeypatch, tiny_model_dir):
    import transformers

    from resofilter_hf import ResonanceConfig, ResonanceTrainer

    monkeypatch.delattr(transformers.Trainer, "_get_output_dir")
    compat.lookup.cache_clear()
    try:
        with pytest.raises(compat.IncompatibleVersionError, match="_get_output_dir"):
            ResonanceTrainer(model=str(tiny_model_dir), args=ResonanceConfig("unused", report_to="none"))
    finally:
        monkeypatch.undo()
        compat.lookup.cache_clear()


def test_in_backward_tells_a_recomputation_from_a_forward():
    import torch

    seen = []
    x = torch.ones(2, requires_grad=True)

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):
            seen.append(("forward", compat.in_backward()))
            return value * 2

        @staticmethod
        def backward(ctx, grad):
            seen.append(("backward", compat.in_backward()))
            return grad * 2

    Probe.apply(x).sum().backward()
    assert seen == [("forward", False), ("backward", True)]
