"""`ResonanceTrainer`: TRL's `SFTTrainer`, plus `score()`.

It takes exactly the arguments `SFTTrainer` takes and trains exactly as it does. `score()` runs the train dataset
(or any other) through TRL's own preparation (chat template, completion-only / assistant-only masks, truncation),
so a score is computed on exactly the tokens the trainer would train on, and returns the dataset with a score
column. Dedup and filtering belong to selection (`select_by_resonance`), not here: no row is ever dropped.
"""

import copy
import hashlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from datasets import Dataset, concatenate_datasets
from transformers import TrainingArguments
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from .config import COMPANION_COLUMNS, ResonanceConfig, validate_resonance_options
from .metrics import ScoreSpec, StepTransform
from .provenance import with_provenance
from .rows import STATUS_NO_TOKENS, STATUS_OK, STATUS_TRUNCATED, check_rows
from .scorer import ResonanceScorer
from .targets import Target, find_targets, resolve_target_kind, unwrap_model


ROW_ID = "__resonance_row_id__"


def _as_resonance_config(args: TrainingArguments | None, model: Any) -> ResonanceConfig:
    if isinstance(args, ResonanceConfig):
        return args
    if args is None:
        name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "") or "model"
        return ResonanceConfig(f"{name.rstrip('/').split('/')[-1]}-SFT")
    dict_args = args.to_dict()
    dict_args["hub_token"] = args.hub_token  # to_dict hides it
    return ResonanceConfig(**dict_args)


def _versions() -> dict[str, str]:
    import accelerate
    import datasets
    import peft
    import torch
    import transformers
    import trl

    from . import __version__

    return {
        "resofilter_hf": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
    }


class ResonanceTrainer(SFTTrainer):
    """An `SFTTrainer` that can score its data by data-parameter resonance.

    Args: those of [`~trl.SFTTrainer`]. `args` may be a [`ResonanceConfig`] (an `SFTConfig` or plain
    `TrainingArguments` is converted, with the resonance defaults of the paper).

    Example:
    ```python
    trainer = ResonanceTrainer(model=model, args=ResonanceConfig("out"), train_dataset=ds, processing_class=tok)
    scored = trainer.score()            # ds + "resonance", "resonance_loss", "resonance_tokens", "resonance_status"
    ```
    """

    _tag_names = ["trl", "sft", "resofilter"]

    def __init__(
        self,
        model,
        args: TrainingArguments | None = None,
        data_collator=None,
        train_dataset: Dataset | None = None,
        eval_dataset=None,
        processing_class=None,
        compute_loss_func: Callable | None = None,
        compute_metrics: Callable | None = None,
        callbacks=None,
        optimizers=(None, None),
        optimizer_cls_and_kwargs=None,
        preprocess_logits_for_metrics=None,
        quantization_config=None,
        peft_config=None,
        formatting_func: Callable[[dict], str] | None = None,
    ):
        args = _as_resonance_config(args, model)
        validate_resonance_options(args)
        self._resonance_source = train_dataset  # the rows as the user gave them, before TRL prepares them
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_loss_func=compute_loss_func,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            quantization_config=quantization_config,
            peft_config=peft_config,
            formatting_func=formatting_func,
        )
        # Fail now, not at the end of training, if the modules or the target kind don't fit this model.
        self.resonance_targets: list[Target] = self._find_resonance_targets()

    # ---- configuration ---------------------------------------------------------------------------------------

    def _find_resonance_targets(self) -> list[Target]:
        args = self.args
        return find_targets(self.model, args.resonance_modules, args.resonance_last_n_layers, args.resonance_target)

    def _score_spec(self) -> ScoreSpec:
        args = self.args
        transform = StepTransform(
            optimizer=args.resonance_optimizer,
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

    def _scoring_collator(self):
        collator = self.data_collator
        if isinstance(collator, DataCollatorForLanguageModeling):
            # Scoring always pads (one row per sample); padding-free training packs, which is a training concern.
            return DataCollatorForLanguageModeling(
                pad_token_id=collator.pad_token_id, pad_to_multiple_of=collator.pad_to_multiple_of
            )
        return collator

    def resonance_provenance(self, n_rows: int, n_scored: int) -> dict:
        """What a score depends on, for dataset cards and reproducibility."""
        args = self.args
        base = unwrap_model(self.model)
        template = getattr(self, "chat_template", None) or getattr(self.processing_class, "chat_template", None)
        revision = (args.model_init_kwargs or {}).get("revision") if isinstance(args.model_init_kwargs, dict) else None
        targets = self.resonance_targets
        return {
            "model_id": getattr(base.config, "_name_or_path", None),
            "model_revision": revision or getattr(base.config, "_commit_hash", None),
            "target": resolve_target_kind(self.model, args.resonance_target),
            "modules": list(args.resonance_modules),
            "last_n_layers": args.resonance_last_n_layers,
            "layers": sorted({t.layer for t in targets}),
            "target_names": [t.name for t in targets],
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
            "completion_only_loss": getattr(self, "completion_only_loss", None),
            "assistant_only_loss": args.assistant_only_loss,
            "column": args.resonance_column,
            "n_rows": n_rows,
            "n_scored": n_scored,
            "n_unscored": n_rows - n_scored,
            "versions": _versions(),
        }

    # ---- scoring ---------------------------------------------------------------------------------------------

    def _prepare_for_scoring(self, dataset: Dataset, max_length_override: bool = False) -> Dataset:
        args = self.args
        if max_length_override:
            args = copy.copy(args)
            args.max_length = None
        return self._prepare_dataset(
            dataset, self.processing_class, args, False, getattr(self, "_formatting_func", None), "resonance"
        )

    def score(self, dataset: Dataset | None = None) -> Dataset:
        """Score every row of `dataset` (default: the train dataset) on the current model state.

        Returns the rows in input order with their columns plus the score column (float64, NaN when there is no
        score), `resonance_loss`, `resonance_tokens`, `resonance_status`, and with `resonance_anatomy`
        `resonance_toward_zero`, `resonance_below_eps`, `resonance_grad_norm`. The model is left exactly as
        it was. In a multi-process run each process scores a share and every process returns the full result.
        """
        args = self.args
        source = self._resonance_source if dataset is None else dataset
        if source is None or not isinstance(source, Dataset):
            raise TypeError(f"score() needs a datasets.Dataset, got {type(source).__name__}.")
        result_columns = {args.resonance_column, *COMPANION_COLUMNS, ROW_ID}
        clean = source.remove_columns([c for c in source.column_names if c in result_columns])
        statuses = check_rows(clean, args.dataset_text_field)
        n = len(clean)

        # TRL's own preparation, with an explicit row id (it drops fully masked rows and may shuffle).
        eligible = [i for i, s in enumerate(statuses) if s == STATUS_OK]
        with_ids = clean.add_column(ROW_ID, list(range(n))).select(eligible)
        prepared = self._prepare_for_scoring(with_ids) if len(with_ids) else with_ids
        present = set(prepared[ROW_ID]) if len(prepared) else set()
        dropped = [i for i in eligible if i not in present]
        if dropped:  # was it truncation, or were there never any loss tokens?
            untruncated = self._prepare_for_scoring(with_ids.filter(lambda r: r[ROW_ID] in set(dropped)), True)
            had_tokens = {r[ROW_ID] for r in untruncated if any(label != -100 for label in r["labels"][1:])}
            for i in dropped:
                statuses[i] = STATUS_TRUNCATED if i in had_tokens else STATUS_NO_TOKENS

        rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in prepared]
        ids = list(prepared[ROW_ID]) if len(prepared) else []
        scorer = ResonanceScorer(
            self.model,
            self.resonance_targets,
            self._score_spec(),
            self._scoring_collator(),
            batch_size=args.resonance_batch_size,
            state_samples=args.resonance_state_samples,
            resume_dir=f"{args.output_dir}/resonance" if args.resonance_resume else None,
            process_index=self.accelerator.process_index,
            num_processes=self.accelerator.num_processes,
            show_progress=not args.disable_tqdm,
        )
        results = scorer.score(rows, ids) if rows else {}

        columns = {key: np.full(n, np.nan) for key in ("score", "loss")}
        columns["tokens"] = np.zeros(n, dtype=np.int64)
        if args.resonance_anatomy:
            columns.update({key: np.full(n, np.nan) for key in ("toward_zero", "below_eps", "grad_norm")})
        for i, result in results.items():
            for key in columns:
                columns[key][i] = result.get(key, np.nan)
            if result["tokens"] == 0:
                statuses[i] = STATUS_NO_TOKENS
        unscored = [i for i, s in enumerate(statuses) if s != STATUS_OK]
        for i in unscored:
            columns["score"][i] = np.nan
        if unscored:
            counts = {s: statuses.count(s) for s in sorted(set(statuses) - {STATUS_OK})}
            warnings.warn(
                f"{len(unscored)} of {n} rows have no resonance score (NaN), by status: {counts}. "
                f"First rows: {unscored[:5]}.",
                UserWarning,
                stacklevel=2,
            )
        names = {"score": args.resonance_column, "tokens": "resonance_tokens"}
        table = {names.get(key, f"resonance_{key}"): values for key, values in columns.items()}
        table["resonance_status"] = statuses
        scored = concatenate_datasets([clean, Dataset.from_dict(table)], axis=1)
        provenance = self.resonance_provenance(n, n - len(unscored))
        return with_provenance(scored, scoring=provenance)
