"""`ScoringSetup`: everything the scoring pipeline needs, built once by the trainer and handed down.

The trainer builds, the pipeline runs: the pipeline reads this plain object (the model, its targets and score
spec, the collator, a prepare function that runs TRL's own preparation, the settings that matter) and never calls
back into the trainer. Whatever changes what a score is or what is written is here, so the scoring folder's
fingerprint (`fingerprint`) sees it.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, IterableDataset
from torch import nn

from ..engine.deltas import ScoreSpec, StepTransform
from ..engine.fingerprint import combine, config_digest, json_digest, tensor_digest, tokenizer_digest
from ..engine.scorer import ResonanceScorer
from ..engine.targets import Target, scored_tensors, unwrap_model, vocab_size
from ..gguf import GGUF_KEY
from ..provenance import library_versions
from ..schemas import ColumnMap, column_map


@dataclass(frozen=True)
class ScoringSettings:
    """The `ResonanceConfig` fields scoring reads (see their documentation there)."""

    output_dir: str
    column: str = "resonance"
    text_field: str = "text"
    max_length: int | None = None
    resume: bool = True
    anatomy: bool = False
    show_progress: bool = True
    batch_size: int = 8
    batch_tokens: int | None = None
    state_samples: int = 256
    reference: Any = None  # the default reference set (`resonance_reference`)
    completion_only_loss: bool | None = None
    assistant_only_loss: bool = False
    preparation: dict = field(default_factory=dict)  # what TRL's preparation depends on, for the fingerprint
    prompt_column: str | None = None  # the user's columns read as TRL's (`schemas.resolve_columns`)
    completion_column: str | None = None
    messages_column: str | None = None

    @classmethod
    def of(cls, args, completion_only_loss: bool | None, formatting_func=None) -> "ScoringSettings":
        """The settings of a `ResonanceConfig` (and TRL's resolved `completion_only_loss`, the user's formatter)."""
        preparation = {  # what TRL's preparation depends on: part of the scoring folder's key
            "max_length": args.max_length,
            "completion_only_loss": completion_only_loss,
            "assistant_only_loss": args.assistant_only_loss,
            "text_field": args.dataset_text_field,
            "dataset_kwargs": args.dataset_kwargs,
            "eos_token": args.eos_token,
            "pad_token": args.pad_token,
            "formatting_func": getattr(formatting_func, "__qualname__", None),
            "formatting_code": _code_digest(formatting_func),
        }
        return cls(
            output_dir=args.output_dir,
            column=args.resonance_column,
            text_field=args.dataset_text_field,
            max_length=args.max_length,
            resume=args.resonance_resume,
            anatomy=args.resonance_anatomy,
            show_progress=not args.disable_tqdm,
            batch_size=args.resonance_batch_size,
            batch_tokens=args.resonance_batch_tokens,
            state_samples=args.resonance_state_samples,
            reference=args.resonance_reference,
            completion_only_loss=completion_only_loss,
            assistant_only_loss=args.assistant_only_loss,
            preparation=preparation,
            prompt_column=args.prompt_column,
            completion_column=args.completion_column,
            messages_column=args.messages_column,
        )

    def column_map(self, rows: Dataset | IterableDataset, formatting_func=None) -> ColumnMap | None:
        """How `rows` become TRL's columns (None: they are; a `formatting_func` reads the user's columns itself)."""
        if formatting_func is not None:
            return None
        return column_map(rows, self.text_field, self.prompt_column, self.completion_column, self.messages_column)


def _code_digest(function) -> str | None:
    """What a formatting function does, as far as its code object tells: bytecode and constants (two functions
    that differ only in a string they format differ here)."""
    code = getattr(function, "__code__", None)
    return None if code is None else json_digest([code.co_code.hex(), repr(code.co_consts), code.co_names])


def score_spec(args, live: bool = False) -> ScoreSpec:
    """The score a `ResonanceConfig` asks for; `live`: in flight on the run's own AdamW moments."""
    transform = StepTransform(
        optimizer="adamw_state" if live else args.resonance_optimizer,
        lr=args.resonance_lr,
        weight_decay=args.resonance_weight_decay,
        eps=args.resonance_eps,
        betas=tuple(args.resonance_betas),
    )
    return ScoreSpec(
        transform=transform,
        metric=args.resonance_metric,
        anatomy=args.resonance_anatomy,
        lora_delta=args.resonance_lora_delta,
        chunk_mb=args.resonance_chunk_mb,
    )


def scoring_provenance(args, model: nn.Module, targets: list[Target], chat_template, completion_only_loss) -> dict:
    """What a score depends on, for cards and reproducibility: model, tensors, transform, preparation, versions."""
    base = unwrap_model(model)
    kwargs = args.model_init_kwargs if isinstance(args.model_init_kwargs, dict) else {}
    template = chat_template if isinstance(chat_template, str) else None
    return {
        "model_id": getattr(base.config, "_name_or_path", None),
        "model_revision": kwargs.get("revision") or getattr(base.config, "_commit_hash", None),
        "model_file": kwargs.get(GGUF_KEY),  # a GGUF checkpoint: the file in `model_id` the weights came from
        # target kind, modules and where they came from, layers, tensor names, shapes and slices
        **scored_tensors(model, args.resonance_target, args.resonance_modules, targets),
        "last_n_layers": args.resonance_last_n_layers,
        "lora_delta": args.resonance_lora_delta,
        "optimizer": args.resonance_optimizer,
        "lr": args.resonance_lr,
        "eps": args.resonance_eps,
        "weight_decay": args.resonance_weight_decay,
        "betas": list(args.resonance_betas),
        "metric": args.resonance_metric,
        "dtype": str(targets[0].weight.dtype).replace("torch.", ""),
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest() if template else None,
        "max_length": args.max_length,
        "completion_only_loss": completion_only_loss,
        "assistant_only_loss": args.assistant_only_loss,
        "column": args.resonance_column,
        "versions": library_versions(),
    }


@dataclass
class ScoringSetup:
    """The model state and settings one scoring runs with.

    `prepare(rows, truncate)` is TRL's preparation of a `Dataset` of rows (never packed; `truncate=False` skips the
    `max_length` cut); `formatting_func` the user's, if any (rows are checked on its text); `processes` the
    accelerate `Accelerator` (or anything with `process_index`, `num_processes`, `is_main_process` and
    `wait_for_everyone()`); `provenance` what the scores depend on, for cards (rows counts are added per run).
    """

    model: nn.Module
    processing_class: Any
    targets: list[Target]
    spec: ScoreSpec
    collate_fn: Callable[[list[dict]], dict]
    prepare: Callable[[Dataset, bool], Dataset]
    settings: ScoringSettings
    processes: Any
    provenance: dict
    formatting_func: Callable[[dict], str] | None = None

    @property
    def vocab_size(self) -> int | None:
        """Pre-tokenized rows must use ids below it."""
        return vocab_size(self.model)

    def scorer(self, batch_size: int | None = None) -> ResonanceScorer:
        """A fresh engine over this setup (a job attaches its reference step and settled moments to its own)."""
        s = self.settings
        return ResonanceScorer(
            self.model,
            self.targets,
            self.spec,
            self.collate_fn,
            batch_size=batch_size or s.batch_size,
            batch_tokens=s.batch_tokens,
            state_samples=s.state_samples,
            process_index=self.processes.process_index,
            num_processes=self.processes.num_processes,
            show_progress=s.show_progress,
        )

    def fingerprint(self, scorer: ResonanceScorer, data_digest: str, reference_digest: str | None) -> str:
        """The key of a scoring folder: full weights and buffers, model config, tokenizer and chat template, the
        engine's settings (targets, transform, metric, chunking, batches), TRL's preparation, the reference rows
        and the rows themselves. Output column names are not in it: they are applied after the cached stage."""
        return combine(
            tensor_digest(self.model),
            config_digest(self.model),
            tokenizer_digest(self.processing_class),
            json_digest([scorer.settings(), self.settings.preparation, reference_digest]),
            data_digest,
        )
