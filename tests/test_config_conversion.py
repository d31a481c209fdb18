"""`args` of every kind becomes a `ResonanceConfig` with every field exactly as the caller set it.

Each config class is built with a non-default value for every field, generated from the field's type (overridden
only where the generic value would be rejected, skipped only where no non-default value can be set on a CPU
machine), and every field is compared after the conversion, together with what `__post_init__` derives.
"""

import copy
import dataclasses
import enum
import types
import typing
import warnings

import pytest
import torch
from transformers import TrainingArguments
from transformers.utils import is_torch_bf16_gpu_available
from trl import SFTConfig

from resofilter_hf import ResonanceConfig
from resofilter_hf.config import as_resonance_config


# Fields that cannot take a non-default value on a CPU machine, with the reason.
SKIPPED = {
    "deepspeed": "builds a DeepSpeed engine config, which needs the deepspeed package (not a dependency)",
    "ddp_backend": "naming a backend makes accelerate join a process group, which a single process has not",
}

# Fields whose generic non-default value (from the type alone) is rejected; these values are still non-default.
OVERRIDES = {
    "accelerator_config": {"even_batches": False, "non_blocking": True},  # a str would be a JSON file to read
    "fsdp_config": {"min_num_params": 7, "version": 2},  # likewise
    "debug": "underflow_overflow",  # a DebugOption name
    "fsdp": "full_shard",  # an FSDP option name
    "tf32": False,  # True needs an Ampere GPU; False is as much a choice as True against the default None
    "save_strategy": "best",  # with load_best_model_at_end, the only strategy that needs no matching eval strategy
    "resonance_when": "inflight",  # resonance_inflight_state='live' applies in flight only
}

# Pairs that cannot both differ from their defaults (At most one of fp16 and bf16): one build sets each side.
EXCLUSIVE = {"fp16": "bf16", "fp16_full_eval": "bf16_full_eval"}


def _default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _members(annotation) -> list:
    """The types a field may hold: the members of a union, else the annotation itself."""
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    return [a for a in (typing.get_args(annotation) if union else [annotation]) if a is not type(None)]


def non_default(f: dataclasses.Field):
    """A value for `f` that differs from its default, from its `choices` or its type."""
    default = _default(f)
    if f.name in OVERRIDES:
        return OVERRIDES[f.name]
    if "choices" in f.metadata:
        return next(c for c in f.metadata["choices"] if c != default)
    members = _members(f.type)
    for member in members:
        if isinstance(member, type) and issubclass(member, enum.Enum):
            return next(m.value for m in member if m.value != default)
    for member in members:
        if dataclasses.is_dataclass(member):  # e.g. accelerate's ParallelismConfig: any instance is not None
            return member()
    if bool in members:
        return (not default) if isinstance(default, bool) else True
    if int in members:
        return default + 2 if isinstance(default, int) and default > 0 else 2
    if float in members:
        return default * 2 if isinstance(default, float) and default else 0.5
    if str in members:
        return "value" if default is None else f"{default}-changed"
    for member in members:
        origin = typing.get_origin(member)
        if origin is list:
            (item,) = typing.get_args(member)
            return [0.5, 0.25] if item is float else ["value"]
        if origin is dict or member is dict:
            return {"key": 1}
    raise AssertionError(f"no non-default value for {f.name}: {f.type!r}")


# What __post_init__ turns a typed value into; every other field must come out exactly as typed.
REWRITTEN = {
    "gradient_checkpointing": "mirrors activation_checkpointing (its deprecated alias)",
    "gradient_checkpointing_kwargs": "mirrors activation_checkpointing_kwargs",
    "accelerator_config": "a dict becomes an AcceleratorConfig",
    "fsdp": "a string of options moves into fsdp_config and fsdp becomes True",
    "debug": "a string becomes a list of DebugOption",
    "include_num_input_tokens_seen": "True becomes 'all'",
    "report_to": "a string becomes a list",
}


def build_all_non_default(config_cls, output_dir, side: str):
    """`config_cls` with every field but the skipped ones at a non-default value, and the values typed.

    `side` ("fp16" or "bf16") picks which field of each exclusive pair is set; the other stays False.
    """
    values = {f.name: non_default(f) for f in dataclasses.fields(config_cls) if f.init and f.name not in SKIPPED}
    left_false = EXCLUSIVE.values() if side == "fp16" else EXCLUSIVE.keys()
    values.update({name: False for name in left_false})
    values.update(output_dir=str(output_dir), use_cpu=True, hub_token="hf_not_a_real_token")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated fields (pad_token, keep_end...) set on purpose
        return config_cls(**values), values


DERIVED_ATTRIBUTES = ("mixed_precision", "fsdp_plugin_args", "n_gpu", "device", "train_batch_size")


def assert_same_fields(converted, source):
    """Every dataclass field of `source`, and what __post_init__ derives beside the fields, equal in `converted`."""
    mismatched = {
        f.name: (getattr(source, f.name), getattr(converted, f.name))
        for f in dataclasses.fields(source)
        if getattr(converted, f.name) != getattr(source, f.name)
    }
    assert not mismatched, mismatched
    for name in DERIVED_ATTRIBUTES:
        assert getattr(converted, name) == getattr(source, name), name


@pytest.fixture(autouse=True)
def _restore_environment(monkeypatch):
    # FSDP argument processing writes this variable; the torch thread count is process-wide too
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("side", ["fp16", "bf16"])
@pytest.mark.parametrize("config_cls", [SFTConfig, TrainingArguments], ids=["SFTConfig", "TrainingArguments"])
def test_every_field_survives_the_conversion(tmp_path, config_cls, side):
    source, typed = build_all_non_default(config_cls, tmp_path, side)
    before = {f.name: copy.deepcopy(getattr(source, f.name)) for f in dataclasses.fields(source)}
    converted = as_resonance_config(source)
    assert type(converted) is ResonanceConfig
    assert_same_fields(converted, source)
    exact = {name: value for name, value in typed.items() if name not in REWRITTEN}
    assert {name: getattr(converted, name) for name in exact} == exact
    assert converted.hub_token == "hf_not_a_real_token" and converted.eos_token == typed.get("eos_token")
    assert {f.name: getattr(source, f.name) for f in dataclasses.fields(source)} == before, "the caller's args changed"
    assert converted.accelerator_config is not source.accelerator_config, "a copy, not the caller's object"
    # the fields a plain config lacks take their defaults (the resonance ones: the paper's)
    fresh = ResonanceConfig(str(tmp_path), use_cpu=True)
    names = {f.name for f in dataclasses.fields(source)}
    for f in dataclasses.fields(ResonanceConfig):
        if f.name not in names and f.name not in ("output_dir",):
            assert getattr(converted, f.name) == getattr(fresh, f.name), f.name


@pytest.mark.parametrize("side", ["fp16", "bf16"])
def test_a_resonance_config_is_used_as_it_is(tmp_path, side):
    source, typed = build_all_non_default(ResonanceConfig, tmp_path, side)
    assert as_resonance_config(source) is source
    resonance = {name: value for name, value in typed.items() if name.startswith("resonance_")}
    assert {name: getattr(source, name) for name in resonance} == resonance


def test_values_that_post_init_derives_survive(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        source = SFTConfig(
            str(tmp_path), use_cpu=True, eval_strategy="steps", logging_steps=7, load_best_model_at_end=True,
            save_steps=14, torch_compile_backend="eager", loss_type="chunked_nll", packing_strategy="bfd-requeue",
            activation_checkpointing=False, include_num_input_tokens_seen=True, lr_scheduler_kwargs='{"power": 2}',
        )  # fmt: skip
    derived = dict(eval_steps=7, metric_for_best_model="loss", greater_is_better=False, torch_compile=True,
                   loss_type="nll", packing_strategy="bfd_split", gradient_checkpointing=False, bf16=True,
                   include_num_input_tokens_seen="all", lr_scheduler_kwargs={"power": 2}, dataloader_pin_memory=False)  # fmt: skip
    assert {name: getattr(source, name) for name in derived} == derived
    converted = as_resonance_config(source)
    assert {name: getattr(converted, name) for name in derived} == derived
    assert_same_fields(converted, source)


def test_no_args_gives_the_stock_defaults(tmp_path):
    """`args=None`: SFTTrainer's own default config (`<model>-SFT`), bf16 off on a machine without bf16 support and
    pinned memory off on a machine without an accelerator (ResonanceConfig's documented defaults)."""
    converted = as_resonance_config(None, "org/tiny-model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SFTConfig's default gradient_checkpointing is deprecated
        stock = SFTConfig(
            "tiny-model-SFT", bf16=None if is_torch_bf16_gpu_available() else False,
            dataloader_pin_memory=torch.accelerator.is_available(),
        )  # fmt: skip
    assert_same_fields(converted, stock)


def test_generated_values_differ_from_the_defaults():
    for config_cls in (TrainingArguments, SFTConfig, ResonanceConfig):
        assert set(SKIPPED) <= {f.name for f in dataclasses.fields(config_cls)}
        for f in dataclasses.fields(config_cls):
            if f.name not in SKIPPED:
                assert non_default(f) != _default(f), f.name


def test_a_subclass_keeps_its_own_fields(tmp_path):
    @dataclasses.dataclass
    class MyConfig(SFTConfig):
        my_field: str = "default"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        source = MyConfig(str(tmp_path), use_cpu=True, my_field="mine", eos_token="<|end|>", pad_token="<pad>")
    converted = as_resonance_config(source)
    assert converted.my_field == "mine" and converted.eos_token == "<|end|>" and converted.pad_token == "<pad>"
    assert_same_fields(converted, source)


def test_the_conversion_repeats_no_deprecation_warning(tmp_path):
    with pytest.warns(FutureWarning, match="pad_token"):
        source = SFTConfig(str(tmp_path), use_cpu=True, pad_token="<pad>", activation_checkpointing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_resonance_config(source)
