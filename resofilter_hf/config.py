"""`ResonanceConfig`: TRL's `SFTConfig` plus the knobs of the resonance score.

Every field is documented twice, in the class docstring and in the field's `help` metadata, so that
`HfArgumentParser(ResonanceConfig)` turns the config into a command line, as TRL's configs do.
"""

import copy
import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from transformers import TrainingArguments
from trl import SFTConfig

from .columns import COMPANIONS
from .engine.options import check_option


TARGETS = ("auto", "weights", "lora")
OPTIMIZERS = ("adamw", "sgd", "adamw_state")
METRICS = ("mean_abs", "l2", "max_abs", "std")
LORA_DELTAS = ("adapter", "effective")
WHEN = ("none", "before_train", "after_train", "inflight")
# Learning rate and Adam eps of the simulated step: a step of 1e39 overflows fp32 (every row non-finite), one of
# 1e-320 underflows to zero (every score 0.0); real values sit far inside these bounds.
SANE_RANGES = {"resonance_lr": (1e-12, 1e2), "resonance_eps": (1e-30, 1.0)}
INFLIGHT_STATES = ("fresh", "live")


@dataclass
class ResonanceConfig(SFTConfig):
    r"""
    Configuration for [`ResonanceTrainer`]: everything [`~trl.SFTConfig`] takes, plus how samples are scored.
    Three defaults differ. Where `SFTConfig` would turn bf16 on and then refuse a machine without a bf16
    accelerator, `bf16` left unset falls back to `False`. And `gradient_checkpointing`, the deprecated alias of
    `activation_checkpointing` in transformers, defaults to unset: activation checkpointing is still on by default,
    as in `SFTConfig`, but set under its current name, so a default config prints no deprecation warning. A value
    given for either name is used as given (and the old name still warns, as transformers does). And
    `dataloader_pin_memory` left unset is on where there is an accelerator and off on a CPU-only machine (nothing
    to pin for; torch would warn at every epoch); a value given is used as given.

    The score of a sample is a statistic of the weight change that one optimizer step on that sample alone would
    make, from the current model state (the ResoFilter paper: mean |dW| of `mlp.up_proj` in the last 3 decoder
    layers after one step of a fresh AdamW with lr 1e-5). The step is computed in closed form from per-sample
    gradients, so no weights move while scoring.

    Parameters:
        > What is scored

        resonance_target (`str`, *optional*, defaults to `"auto"`):
            `"weights"`: the selected modules' weight matrices (the paper). `"lora"`: the LoRA A and B matrices of
            the selected modules (per-sample adapter deltas). `"auto"`: `"lora"` if the model is a PEFT model whose
            LoRA adapters cover every selected module, else `"weights"` (with a one-line notice for a PEFT model:
            adapters elsewhere, or a method without LoRA layers; prompt learning's virtual tokens are not part of
            the scored forward).
        resonance_modules (`list[str]` or `None`, *optional*, defaults to `None`):
            Module-name suffixes of the scored linear layers, inside the language model's decoder layers. `None`
            (or `"auto"`): the MLP up-projection of the model's family, in the last `resonance_last_n_layers`
            decoder layers that have one (`mlp.up_proj` for Llama, Mistral, Qwen, Gemma, OLMo, Cohere;
            `mlp.dense_h_to_4h` for GPT-NeoX, `mlp.c_fc` for GPT-2, the up half of Phi-3's `mlp.gate_up_proj`,
            `feed_forward.w3` for LFM2; for MoE models every expert's up-projection, plus a shared expert's). A
            suffix that matches nothing is an error listing the model's candidate names. Fused 3-D expert weights
            are scored whole, from each sample's exact gradient (one autograd pass per sample for those tensors):
            an expert the sample was not routed to gets zero gradient, so its delta is the weight-decay term
            alone, as in a real optimizer step. In-flight scoring refuses them.
        resonance_last_n_layers (`int` or `None`, *optional*, defaults to `3`):
            Score only the modules in the last n decoder layers (with the default modules: the last n that have an
            up-projection, which differs only for hybrid models). `None` scores every layer.
        resonance_lora_delta (`str`, *optional*, defaults to `"adapter"`):
            LoRA only. `"adapter"`: the metric over the A and B deltas (each a target tensor). `"effective"`: the
            metric over the effective weight delta s*(dB A + B dA + dB dA) of each module.

        > The simulated step

        resonance_optimizer (`str`, *optional*, defaults to `"adamw"`):
            `"adamw"`: one step of a fresh `torch.optim.AdamW` (the paper): dW = -lr g/(|g|+eps) - lr wd W.
            `"sgd"`: dW = -lr (g + wd W). `"adamw_state"`: the step of an AdamW whose moments have settled:
            second moment estimated as the mean g^2 over the first `resonance_state_samples` scored rows (or the
            live optimizer's state when scoring in flight with `resonance_inflight_state="live"`).
        resonance_lr (`float`, *optional*, defaults to `1e-5`):
            Learning rate of the simulated step.
        resonance_weight_decay (`float`, *optional*, defaults to `0.01`):
            Weight decay of the simulated step (decoupled for AdamW, L2 for SGD: the same -lr wd W term).
        resonance_eps (`float`, *optional*, defaults to `1e-8`):
            Adam epsilon of the simulated step.
        resonance_betas (`list[float]`, *optional*, defaults to `[0.9, 0.999]`):
            Adam betas of the simulated step (a fresh step does not depend on them; `"adamw_state"` does).
        resonance_state_samples (`int`, *optional*, defaults to `256`):
            For `"adamw_state"` in `score()`: rows used to estimate the second moment.

        > The reduction

        resonance_metric (`str`, *optional*, defaults to `"mean_abs"`):
            Statistic of each target's delta, averaged over target tensors: `"mean_abs"` (the paper), `"l2"`
            (Frobenius norm), `"max_abs"`, `"std"` (unbiased).
        resonance_anatomy (`bool`, *optional*, defaults to `False`):
            Also write the columns that explain a score: `resonance_toward_zero` (share of entries the step moves
            toward zero), `resonance_below_eps` (share of entries with |g| < eps) and `resonance_grad_norm`
            (L2 norm of the sample's gradient over all targets).

        > Alignment with a reference set

        resonance_reference (`str` or `None`, *optional*, defaults to `None`):
            A trusted reference set: a local parquet / JSON Lines file or `save_to_disk` folder, or a Hub dataset
            id (its train split); `score(reference=...)` also takes a `datasets.Dataset`. Adds the column
            `resonance_alignment`: the cosine between each sample's step (the configured transform; `"sgd"` with
            `resonance_weight_decay=0` gives the raw gradient) and R, the mean over the reference rows of each
            row's own step, over all target tensors (for LoRA: the A and B steps). Higher means more like the
            reference. R is taken at the model state the scores are taken at; in flight, once, from the weights
            `train()` starts from (on resume: before the checkpoint is loaded, so R stays the first run's).

        > Columns of the dataset

        prompt_column (`str` or `None`, *optional*, defaults to `None`):
            The column read as the prompt (with `completion_column`), for data whose columns are not TRL's
            `prompt`/`completion`, `messages` or text. `None`: TRL's layout as it is, or a recognised one, read
            with a one-line notice: GSM8K's `question`/`answer`, Alpaca's `instruction`/`input`/`output`,
            MetaMathQA's `query`/`response`, MATH's `problem`/`solution`, ShareGPT's `conversations`
            (`from`/`value` turns). The dataset keeps its own columns; scores come back beside them.
        completion_column (`str` or `None`, *optional*, defaults to `None`):
            The column read as the completion (with `prompt_column`).
        messages_column (`str` or `None`, *optional*, defaults to `None`):
            A column of chat turns read as `messages` (instead of a prompt/completion pair).

        > Output and execution

        resonance_column (`str`, *optional*, defaults to `"resonance"`):
            Name of the score column.
        resonance_batch_size (`int`, *optional*, defaults to `8`):
            Samples per scoring forward/backward pass, per process.
        resonance_batch_tokens (`int` or `None`, *optional*, defaults to `None`):
            Padded-token budget per scoring batch, beside `resonance_batch_size` (a batch holds at most that many
            rows and at most this many tokens counted as rows x its longest row), so long rows do not run out of
            memory and short rows are not starved. A row longer than the budget is an error naming it. `None`:
            rows only. On a CUDA out-of-memory error a batch is split in halves and retried either way.
        resonance_chunk_mb (`int`, *optional*, defaults to `256`):
            Memory budget, in MiB, for the per-sample gradient chunks and the LM-head logit chunks. Per-sample
            full matrices are never materialised at once.
        resonance_resume (`bool`, *optional*, defaults to `True`):
            Write scores to `output_dir/resonance/<fingerprint>/` (Parquet shards, each with a completion marker)
            as they are computed, and skip finished shards when `score()` runs again with the same model, data and
            settings, so an interrupted (even killed) run loses nothing. Other inputs start another folder.
        resonance_when (`str`, *optional*, defaults to `"none"`):
            When [`ResonanceTrainer.train`] scores the train dataset: `"none"`, `"before_train"`, `"after_train"`
            (a `score()` pass on the model state at that point) or `"inflight"` (each sample's delta at the step it
            is trained on, from hooks on the training pass itself).
        resonance_inflight_state (`str`, *optional*, defaults to `"fresh"`):
            In flight only. `"fresh"`: the configured transform (the paper's fresh AdamW by default). `"live"`: the
            step the run's own AdamW would make for that sample alone, from its current moments and learning rate.
    """

    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "Deprecated alias of `activation_checkpointing`. Unset: activation checkpointing on, as in "
            "SFTConfig, without the deprecation warning.",
            "nargs": "?",
            "const": True,
        },
    )
    dataloader_pin_memory: bool | None = field(
        default=None,
        metadata={
            "help": "Whether to pin memory in data loaders. Unset: on when there is an accelerator (as in SFTConfig), "
            "off on a CPU-only machine, where torch would warn at every epoch.",
            "nargs": "?",
            "const": True,
        },
    )
    resonance_target: str = field(
        default="auto",
        metadata={
            "help": "'weights' (the paper), 'lora' (LoRA A/B deltas), or 'auto': 'lora' if the model's LoRA "
            "adapters cover the selected modules, else 'weights'.",
            "choices": list(TARGETS),
        },
    )
    resonance_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module-name suffixes of the scored linear layers; None or 'auto': the MLP up-projection of the "
            "model's family (e.g. mlp.up_proj, GPT-2 mlp.c_fc, the up half of Phi-3 mlp.gate_up_proj, MoE experts)."
        },
    )
    resonance_last_n_layers: int | None = field(
        default=3,
        metadata={
            "help": "Score only the modules in the last n decoder layers (default modules: the last n that have "
            "an up-projection); None scores every layer."
        },
    )
    resonance_lora_delta: str = field(
        default="adapter",
        metadata={
            "help": "LoRA only: 'adapter' (metric over the A and B deltas) or 'effective' "
            "(metric over s*(dB A + B dA + dB dA)).",
            "choices": list(LORA_DELTAS),
        },
    )
    resonance_optimizer: str = field(
        default="adamw",
        metadata={
            "help": "Simulated step: 'adamw' (fresh AdamW, the paper), 'sgd', or 'adamw_state' (settled moments).",
            "choices": list(OPTIMIZERS),
        },
    )
    resonance_lr: float = field(default=1e-5, metadata={"help": "Learning rate of the simulated step."})
    resonance_weight_decay: float = field(default=0.01, metadata={"help": "Weight decay of the simulated step."})
    resonance_eps: float = field(default=1e-8, metadata={"help": "Adam epsilon of the simulated step."})
    resonance_betas: list[float] = field(
        default_factory=lambda: [0.9, 0.999], metadata={"help": "Adam betas of the simulated step."}
    )
    resonance_state_samples: int = field(
        default=256, metadata={"help": "'adamw_state' in score(): rows used to estimate the second moment."}
    )
    resonance_metric: str = field(
        default="mean_abs",
        metadata={
            "help": "Statistic of each target's delta, averaged over targets: 'mean_abs' (paper), 'l2', "
            "'max_abs', 'std'.",
            "choices": list(METRICS),
        },
    )
    resonance_anatomy: bool = field(
        default=False,
        metadata={"help": "Also write resonance_toward_zero, resonance_below_eps and resonance_grad_norm columns."},
    )
    resonance_reference: str | None = field(
        default=None,
        metadata={
            "help": "Trusted reference set (local parquet/JSON Lines file, save_to_disk folder or Hub id): adds "
            "resonance_alignment, the cosine between each sample's step and the mean step of the reference rows."
        },
    )
    prompt_column: str | None = field(
        default=None, metadata={"help": "Column read as the prompt, with completion_column (e.g. 'question')."}
    )
    completion_column: str | None = field(
        default=None, metadata={"help": "Column read as the completion, with prompt_column (e.g. 'answer')."}
    )
    messages_column: str | None = field(default=None, metadata={"help": "Column of chat turns read as 'messages'."})
    resonance_column: str = field(default="resonance", metadata={"help": "Name of the score column."})
    resonance_batch_size: int = field(
        default=8, metadata={"help": "Samples per scoring forward/backward pass, per process."}
    )
    resonance_batch_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Padded-token budget per scoring batch (rows x longest row), beside resonance_batch_size; "
            "None: rows only."
        },
    )
    resonance_chunk_mb: int = field(
        default=256, metadata={"help": "Memory budget (MiB) for per-sample gradient and logit chunks."}
    )
    resonance_resume: bool = field(
        default=True,
        metadata={"help": "Save scores under output_dir/resonance/ as they come and skip shards already scored."},
    )
    resonance_when: str = field(
        default="none",
        metadata={
            "help": "When train() scores the train dataset: 'none', 'before_train', 'after_train' or 'inflight'.",
            "choices": list(WHEN),
        },
    )
    resonance_inflight_state: str = field(
        default="fresh",
        metadata={
            "help": "In flight: 'fresh' (the configured transform) or 'live' (the run's own AdamW moments and lr).",
            "choices": list(INFLIGHT_STATES),
        },
    )

    def __post_init__(self):
        if self.bf16 is None and not self.fp16 and (self.use_cpu or not _bf16_accelerator()):
            # SFTConfig turns bf16 on by default and then refuses a machine without a bf16 accelerator (or, with
            # use_cpu, runs CPU autocast in bf16); here the default falls back to fp32 instead, so
            # `ResonanceConfig("out")` works on a laptop and scores on the CPU are not bf16-rounded.
            self.bf16 = False
        if self.gradient_checkpointing is None and self.activation_checkpointing is None:
            # SFTConfig's default (on), under the current name: the deprecated one would warn about a value that
            # nobody set
            self.activation_checkpointing = True
        super().__post_init__()
        if self.dataloader_pin_memory is None:  # unset: pin only where there is an accelerator to pin for
            self.dataloader_pin_memory = not self.use_cpu and _accelerator_available()
        if isinstance(self.resonance_modules, str):
            self.resonance_modules = [self.resonance_modules]
        if self.resonance_modules is not None:
            self.resonance_modules = list(self.resonance_modules)
            if self.resonance_modules == ["auto"]:  # the family's up-projection, as None
                self.resonance_modules = None
        self.resonance_betas = [float(b) for b in self.resonance_betas]
        validate_resonance_options(self)


def as_resonance_config(args: TrainingArguments | None, model: Any = None) -> ResonanceConfig:
    """`args` (an `SFTConfig`, a plain `TrainingArguments`, ...) as a `ResonanceConfig`, every field as it is.

    Built from the dataclass fields, not from `to_dict()`, which masks every field whose name ends in `_token`
    (`eos_token`, `pad_token`, `hub_token`). Values that `args.__post_init__` derived are passed on as derived.
    Fields `args` lacks take their defaults (the resonance ones: the paper's); fields a `ResonanceConfig` lacks (a
    subclass's own) are kept as attributes. Values are copies: the trainer never changes the caller's `args`.
    `args=None` gives the defaults `SFTTrainer` uses, in `<model name>-SFT` (`model`: a model or its name).
    """
    if args is None:
        name = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", "")
        return ResonanceConfig(f"{(name or 'model').rstrip('/').split('/')[-1]}-SFT")
    if isinstance(args, ResonanceConfig):
        return args
    known = {f.name for f in fields(ResonanceConfig) if f.init}
    values = {f.name: copy.deepcopy(getattr(args, f.name)) for f in fields(args) if f.init}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecations were raised once, when `args` was built
        config = ResonanceConfig(**{name: value for name, value in values.items() if name in known})
    for name, value in values.items():
        if name not in known:
            setattr(config, name, value)
    return config


def _accelerator_available() -> bool:
    import torch

    return torch.accelerator.is_available()


def _bf16_accelerator() -> bool:
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

    return is_torch_bf16_gpu_available() or is_torch_xla_available()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_resonance_options(args: ResonanceConfig) -> None:
    """Check every resonance field; raise a ValueError that names the field and what it accepts."""
    check_option("ResonanceConfig", "resonance_target", args.resonance_target, TARGETS)
    check_option("ResonanceConfig", "resonance_optimizer", args.resonance_optimizer, OPTIMIZERS)
    check_option("ResonanceConfig", "resonance_metric", args.resonance_metric, METRICS)
    check_option("ResonanceConfig", "resonance_lora_delta", args.resonance_lora_delta, LORA_DELTAS)
    check_option("ResonanceConfig", "resonance_when", args.resonance_when, WHEN)
    check_option("ResonanceConfig", "resonance_inflight_state", args.resonance_inflight_state, INFLIGHT_STATES)
    modules = args.resonance_modules
    if modules is not None and (not modules or not all(isinstance(m, str) and m.strip() for m in modules)):
        raise ValueError(
            f"`resonance_modules` must be None ('auto') or a non-empty list of module-name suffixes, got {modules!r}."
        )
    last_n = args.resonance_last_n_layers
    if last_n is not None and (not _is_int(last_n) or last_n < 1):
        raise ValueError(f"`resonance_last_n_layers` must be >= 1 (an integer) or None, got {last_n!r}.")
    for name in ("resonance_lr", "resonance_eps", "resonance_weight_decay"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    for name, (low, high) in SANE_RANGES.items():  # outside these a fp32 step under- or overflows
        if not low <= getattr(args, name) <= high:
            raise ValueError(f"`{name}` must be between {low:g} and {high:g}, got {getattr(args, name)!r}.")
    if args.resonance_weight_decay < 0:
        raise ValueError(f"`resonance_weight_decay` must be >= 0, got {args.resonance_weight_decay}.")
    betas = args.resonance_betas
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"`resonance_betas` must be two numbers in [0, 1), got {betas}.")
    for name in ("resonance_batch_size", "resonance_chunk_mb", "resonance_state_samples"):
        value = getattr(args, name)
        if not _is_int(value) or value < 1:
            raise ValueError(f"`{name}` must be >= 1 (an integer), got {value!r}.")
    if args.resonance_batch_tokens is not None and (
        not _is_int(args.resonance_batch_tokens) or args.resonance_batch_tokens < 1
    ):
        raise ValueError(
            f"`resonance_batch_tokens` must be >= 1 (an integer) or None, got {args.resonance_batch_tokens!r}."
        )
    if not args.resonance_column or args.resonance_column in COMPANIONS:
        raise ValueError(
            f"`resonance_column` must be a non-empty name other than the companion columns "
            f"{sorted(COMPANIONS)}, got {args.resonance_column!r}."
        )
    if args.resonance_reference is not None and not str(args.resonance_reference).strip():
        raise ValueError("`resonance_reference` must be a dataset path or Hub id, got an empty string.")
    if args.max_length is not None and (not _is_int(args.max_length) or args.max_length < 1):
        raise ValueError(f"`max_length` must be a whole number >= 1 (tokens) or None, got {args.max_length!r}.")
    if args.resonance_inflight_state == "live" and args.resonance_when != "inflight":
        raise ValueError("`resonance_inflight_state='live'` only applies with `resonance_when='inflight'`.")
