"""A default ResonanceConfig is quiet: no warning of its own making, and SFTConfig's defaults otherwise."""

import warnings

import pytest
from transformers import HfArgumentParser
from trl import SFTConfig

from resofilter_hf import ResonanceConfig


def test_a_default_config_warns_about_nothing(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = ResonanceConfig(str(tmp_path))
        (parsed,) = HfArgumentParser(ResonanceConfig).parse_args_into_dataclasses(["--output_dir", str(tmp_path)])
    for args in (config, parsed):
        assert args.activation_checkpointing is True and args.gradient_checkpointing is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SFTConfig's own default uses the deprecated name
        sft = SFTConfig(str(tmp_path), bf16=False)
    assert (sft.activation_checkpointing, sft.gradient_checkpointing) == (True, True)


@pytest.mark.parametrize("value", [True, False])
def test_a_value_the_user_sets_is_kept_and_the_old_name_still_warns(tmp_path, value):
    with pytest.warns(FutureWarning, match="`gradient_checkpointing` is deprecated"):
        old = ResonanceConfig(str(tmp_path), gradient_checkpointing=value)
    assert old.activation_checkpointing is value and old.gradient_checkpointing is value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = ResonanceConfig(str(tmp_path), activation_checkpointing=value)
    assert new.activation_checkpointing is value and new.gradient_checkpointing is value


def test_use_cpu_without_bf16_set_trains_in_float32():
    """With `use_cpu=True` and bf16 unset, the default is fp32 (SFTConfig would autocast the CPU run in bf16)."""
    assert ResonanceConfig("unused", use_cpu=True, report_to="none").bf16 is False
    assert ResonanceConfig("unused", use_cpu=True, bf16=True, report_to="none").bf16 is True  # the user's choice


def test_pinned_memory_unset_follows_the_machine_and_a_given_value_stays(tmp_path):
    """Unset, `dataloader_pin_memory` is on only with an accelerator (torch warns at every epoch when there is
    nothing to pin for); the README's `ResonanceConfig("out")` trains without that warning on a CPU-only machine."""
    import torch

    assert ResonanceConfig(str(tmp_path)).dataloader_pin_memory is torch.accelerator.is_available()
    assert ResonanceConfig(str(tmp_path), use_cpu=True).dataloader_pin_memory is False
    assert ResonanceConfig(str(tmp_path), dataloader_pin_memory=True).dataloader_pin_memory is True
