"""The short `--help` of `resofilter score | train`: the fields people set, grouped, built without importing TRL.

Each entry is (field, default, the opening words of the field's own help); a None default is not shown. The
dataclasses stay the one source of truth: tests/test_cli_help.py checks every entry against its field (the help
starts with these words, the default is this one) and that every `resonance_*` field of `ResonanceConfig` is
listed. `--help-all` prints TRL's full list, every field of every dataclass.
"""

from __future__ import annotations

import textwrap
from typing import Any


# (group title, one line about the group, entries)
GROUPS: tuple[tuple[str, str, tuple[tuple[str, Any, str], ...]], ...] = (
    (
        "data",
        "dataset_name: a local .parquet/.jsonl file or save_to_disk folder, a Hub id, 'gsm8k' or 'toy:math?n=200'",
        (
            ("dataset_name", None, "Path or name of the dataset to load."),
            ("dataset_config", None, "Dataset configuration name."),
            ("dataset_train_split", "train", "Dataset split to use for training."),
            ("max_rows", None, "Use only the first N rows of the split."),
            ("scores_path", None, "`score`: where the scored rows go: a parquet file"),
            ("prompt_column", None, "Column read as the prompt, with completion_column"),
            ("completion_column", None, "Column read as the completion, with prompt_column"),
            ("messages_column", None, "Column of chat turns read as 'messages'."),
        ),
    ),
    (
        "model",
        "model_name_or_path: a Hub id, a local folder, or a built-in tiny model ('toy:llama', 'toy:llama-warm')",
        (
            ("model_name_or_path", None, "Model checkpoint for weights initialization."),
            ("dtype", "float32", "Override the default `torch.dtype` and load the model under this dtype."),
            ("use_peft", False, "Whether to use PEFT for training."),
            ("lora_r", 16, "LoRA R value."),
            ("lora_alpha", 32, "LoRA alpha."),
            ("lora_dropout", 0.05, "LoRA dropout."),
            ("lora_target_modules", None, "LoRA target modules."),
            ("load_in_4bit", False, "Whether to use 4 bit precision for the base model."),
        ),
    ),
    (
        "training (SFTConfig)",
        "",
        (
            ("output_dir", None, "The output directory where the model predictions and checkpoints will be"),
            ("max_length", 1024, "Maximum length of the tokenized sequence."),
            ("learning_rate", 2e-05, "The initial learning rate for AdamW."),
            ("num_train_epochs", 3.0, "Total number of training epochs to perform."),
            ("per_device_train_batch_size", 8, "The batch size per device for training."),
            ("gradient_accumulation_steps", 1, "Number of update steps to accumulate gradients"),
            ("bf16", None, "Whether to use bf16 (mixed) precision instead of 32-bit."),
            ("use_cpu", False, "Whether or not to use cpu."),
        ),
    ),
    (
        "resonance (ResonanceConfig)",
        "the score and how it runs; the defaults are the paper's",
        (
            ("resonance_target", "auto", "'weights' (the paper), 'lora' (LoRA A/B deltas), or 'auto'"),
            ("resonance_modules", None, "Module-name suffixes of the scored linear layers"),
            ("resonance_last_n_layers", 3, "Score only the modules in the last n decoder layers"),
            (
                "resonance_lora_delta",
                "adapter",
                "LoRA only: 'adapter' (metric over the A and B deltas) or 'effective'",
            ),
            (
                "resonance_optimizer",
                "adamw",
                "Simulated step: 'adamw' (fresh AdamW, the paper), 'sgd', or 'adamw_state'",
            ),
            ("resonance_lr", 1e-05, "Learning rate of the simulated step."),
            ("resonance_weight_decay", 0.01, "Weight decay of the simulated step."),
            ("resonance_eps", 1e-08, "Adam epsilon of the simulated step."),
            ("resonance_betas", [0.9, 0.999], "Adam betas of the simulated step."),
            ("resonance_state_samples", 256, "'adamw_state' in score(): rows used to estimate the second moment."),
            ("resonance_metric", "mean_abs", "Statistic of each target's delta, averaged over targets"),
            (
                "resonance_anatomy",
                False,
                "Also write resonance_toward_zero, resonance_below_eps and resonance_grad_norm",
            ),
            ("resonance_reference", None, "Trusted reference set"),
            ("resonance_column", "resonance", "Name of the score column."),
            ("resonance_batch_size", 8, "Samples per scoring forward/backward pass, per process."),
            ("resonance_batch_tokens", None, "Padded-token budget per scoring batch (rows x longest row)"),
            ("resonance_chunk_mb", 256, "Memory budget (MiB) for per-sample gradient and logit chunks."),
            ("resonance_resume", True, "Save scores under output_dir/resonance/ as they come"),
            ("resonance_when", "none", "When train() scores the train dataset"),
            ("resonance_inflight_state", "fresh", "In flight: 'fresh' (the configured transform) or 'live'"),
        ),
    ),
)

NAME_WIDTH = 30
HELP_WIDTH = 119  # the project's line length: one line per field on a wide terminal


def short_fields_help() -> str:
    """The field groups as help text: one line per field (its opening words and default), a line per group."""
    lines = []
    for title, about, entries in GROUPS:
        lines += ["", f"{title}:"] + ([f"  {about}"] if about else [])
        for name, default, opening in entries:
            text = opening if opening.endswith(".") else f"{opening} ..."
            if default is not None:
                text += f" (default: {default})"
            lines += textwrap.wrap(
                text,
                HELP_WIDTH,
                initial_indent=f"  --{name:<{NAME_WIDTH}}",
                subsequent_indent=" " * (NAME_WIDTH + 4),
            )
    return "\n".join(lines[1:])


def short_field_names() -> list[str]:
    """Every field the short help lists, in its order."""
    return [name for _, _, entries in GROUPS for name, _, _ in entries]
