"""`ResonanceTrainer`: TRL's `SFTTrainer`, plus `score()`.

It takes exactly the arguments `SFTTrainer` takes and trains exactly as it does. `score()` runs the train dataset
(or any other) through TRL's own preparation (chat template, completion-only / assistant-only masks, truncation),
so a score is computed on exactly the tokens the trainer would train on, and returns the dataset with a score
column. Dedup and filtering belong to selection (`select_by_resonance`), not here: no row is ever dropped.
"""

import copy
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasets import Dataset, IterableDataset, concatenate_datasets
from transformers import TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import SFTTrainer

from .config import as_resonance_config, validate_resonance_options
from .confounds import loss_token_counts
from .engine.compat import check_private_symbols, prepare_dataset
from .engine.deltas import ScoreSpec
from .engine.files import write_atomic
from .engine.inflight import ROW_KEY, InflightRecorder, RowIdCollator, live_adam_states, scoring_collator
from .engine.inflight_log import InflightScoreLog
from .engine.quantized import check_not_repacked, cpu_4bit_repack_guard
from .engine.rows import ROW_ID, SCORES_ROW, check_no_row_id, check_train_rows
from .engine.scorer import ResonanceScorer
from .engine.targets import Target, find_targets, vocab_size
from .gguf import gguf_loaded
from .inflight_checks import check_inflight_args, check_inflight_model, warn_if_lora_b_is_zero
from .inflight_scores import gather_inflight, inflight_dataset
from .pipeline import (
    ScoringSettings,
    ScoringSetup,
    loss_on_prompt,
    score_rows,
    score_spec,
    scoring_losses,
    scoring_provenance,
)
from .provenance import (
    CITATION,
    SCORES_FILE,
    load_scored,
    read_provenance,
    with_provenance,
    write_scores_file,
)
from .reference import inflight_reference
from .schemas import ColumnMap, column_map


STATE_FILE = "resonance_state.json"  # in-flight scores so far, beside each checkpoint


class ResonanceTrainer(SFTTrainer):
    """An `SFTTrainer` that can score its data by data-parameter resonance.

    Args: those of [`~trl.SFTTrainer`]. `args` may be a [`ResonanceConfig`], an `SFTConfig`, a plain
    `TrainingArguments` or None: every field is kept as set, the resonance ones default to the paper's. With
    `resonance_when="none"` it trains exactly as `SFTTrainer` does and checks the scored modules only when
    `score()` first needs them; a `resonance_when` that scores checks them at construction.

    Example:
    ```python
    trainer = ResonanceTrainer(model=model, args=ResonanceConfig("out"), train_dataset=ds, processing_class=tok)
    scored = trainer.score()            # ds + "resonance", "resonance_loss", "resonance_tokens", "resonance_status"
    ```
    """

    _tag_names = ["trl", "sft", "resofilter"]
    _paper = {  # TRL's own model card cites the method through these
        "title": "ResoFilter: Fine-grained Synthetic Data Filtering for Large Language Models through Data-Parameter "
        "Resonance Analysis",
        "id": "2412.14809",
        "citation": CITATION,
    }

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
        check_private_symbols()
        args = as_resonance_config(args, model)
        validate_resonance_options(args)
        self._resonance_source = train_dataset  # the rows as the user gave them, before TRL prepares them
        self._resonance_map, train_dataset, eval_dataset = _trl_rows(
            args, formatting_func, train_dataset, eval_dataset
        )
        self._resonance_trl_rows = train_dataset  # the user's rows with TRL's columns
        self.scored_dataset: Dataset | None = None
        self._resonance_recorder: InflightRecorder | None = None
        self._resonance_reference_info: dict | None = None  # in flight: the reference set R was taken on
        self._resonance_lengths = None  # in flight: loss tokens per train row, for the confound report
        inflight = args.resonance_when == "inflight"
        if inflight:
            check_inflight_args(args, train_dataset)
            # a row id rides through TRL's preparation and the collator, so each trained sample maps to its row
            train_dataset = train_dataset.add_column(ROW_ID, list(range(len(train_dataset))))
        with gguf_loaded(model, args, processing_class) as (model, processing_class):  # a GGUF file: loaded here
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
        self._resonance_targets: list[Target] | None = None
        if isinstance(train_dataset, Dataset) and "input_ids" in train_dataset.column_names:
            check_train_rows(train_dataset, args.dataset_text_field, vocab_size=vocab_size(self.model))
        if args.resonance_when != "none":  # fail now, not at the end of training, if the targets don't fit
            _ = self.resonance_targets
        if inflight:
            check_inflight_model(self.model, self.resonance_targets, getattr(self, "aux_loss_enabled", False))
            self.data_collator = RowIdCollator(self.data_collator)
            self._resonance_recorder = InflightRecorder(self.resonance_targets, self._score_spec())
            self.add_callback(
                InflightScoreLog(self._resonance_recorder, args.resonance_column, self.log, self._gather_inflight)
            )
        if args.resonance_when in ("before_train", "inflight") and self.resonance_targets[0].role == "lora_A":
            warn_if_lora_b_is_zero(self.resonance_targets)

    # ---- configuration ---------------------------------------------------------------------------------------

    @property
    def resonance_targets(self) -> list[Target]:
        """The scored tensors, found when first needed: a trainer that never scores never checks its model."""
        if self._resonance_targets is None:
            args = self.args
            modules, last_n, kind = args.resonance_modules, args.resonance_last_n_layers, args.resonance_target
            self._resonance_targets = find_targets(self.model, modules, last_n, kind)
        return self._resonance_targets

    def _score_spec(self) -> ScoreSpec:
        live = self.args.resonance_when == "inflight" and self.args.resonance_inflight_state == "live"
        return score_spec(self.args, live)

    def scoring_setup(self) -> ScoringSetup:
        """What the scoring pipeline runs with, built here and handed down (the pipeline never calls back)."""
        args = self.args
        formatting = getattr(self, "_formatting_func", None)
        completion_only = getattr(self, "completion_only_loss", None)
        return ScoringSetup(
            model=self.model,
            processing_class=self.processing_class,
            targets=self.resonance_targets,
            spec=self._score_spec(),
            collate_fn=scoring_collator(self.data_collator),
            prepare=self.prepare_scoring_dataset,
            settings=ScoringSettings.of(args, completion_only, formatting),
            processes=self.accelerator,
            provenance=self.resonance_provenance(),
            formatting_func=formatting,
        )

    def scorer(self, batch_size: int | None = None) -> ResonanceScorer:
        """The batched scoring engine over this trainer's model, targets, collator and resonance settings."""
        return self.scoring_setup().scorer(batch_size)

    def resonance_provenance(self) -> dict:
        """What a score depends on, for dataset cards and reproducibility (a run adds its row counts)."""
        template = getattr(self, "chat_template", None) or getattr(self.processing_class, "chat_template", None)
        completion_only = getattr(self, "completion_only_loss", None)
        return scoring_provenance(self.args, self.model, self.resonance_targets, template, completion_only)

    # ---- scoring ---------------------------------------------------------------------------------------------

    def prepare_scoring_dataset(self, dataset: Dataset, truncate: bool = True) -> Dataset:
        """`dataset` through TRL's own preparation (chat template, loss masks, truncation), never packed: the tokens
        a score is computed on. Fully masked rows are dropped, as TRL drops them; other columns are kept.
        `truncate=False` skips the `max_length` cut (to tell truncated rows from rows without loss tokens)."""
        args = self.args
        if not truncate:
            args = copy.copy(args)
            args.max_length = None
        formatting = getattr(self, "_formatting_func", None)
        return prepare_dataset(self, dataset, self.processing_class, args, formatting, "resonance")

    def score(
        self,
        dataset: Dataset | IterableDataset | None = None,
        *,
        parts_dir: str | None = None,
        max_rows: int | None = None,
        reference: Dataset | str | None = None,
    ) -> Dataset | IterableDataset:
        """Score every row of `dataset` (default: the train dataset) on the current model state.

        Returns the rows in input order with their columns plus the score column (float64, NaN when there is no
        score), `resonance_loss`, `resonance_tokens`, `resonance_status`, `resonance_truncated` (and the anatomy
        columns with `resonance_anatomy`; `resonance_alignment` with a `reference` set, default
        `resonance_reference`); the model is left exactly as it was. Scores go to Parquet shards under
        `output_dir/resonance/<fingerprint>/` as they are made (a rerun resumes there); each process scores a
        share and returns the full result. A stream (`IterableDataset`, capped at `max_rows`) goes through the
        very same stages and comes back as a stream over the Parquet parts written to `parts_dir` (default
        `output_dir/scored/`), one per window, with the same columns, statuses, warnings and provenance.
        """
        rows, mapping = (self._resonance_source, self._resonance_map) if dataset is None else (dataset, None)
        return score_rows(
            self.scoring_setup(), rows, parts_dir=parts_dir, max_rows=max_rows, reference=reference, mapping=mapping
        )

    def losses(self, dataset: Dataset, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Forward only: (mean loss over each row's loss tokens, loss-token count), per input row, on the current
        model, through the same preparation and batches as `score`. A row the preparation drops gets NaN, 0."""
        return scoring_losses(self.scoring_setup(), dataset, batch_size)

    # ---- training: when to score, in-flight capture, checkpoints ---------------------------------------------

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._resonance_recorder is not None and ROW_ID not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, ROW_ID]

    def training_step(self, model, inputs, num_items_in_batch=None):
        recorder = self._resonance_recorder
        if recorder is None or ROW_KEY not in inputs:
            return super().training_step(model, inputs, num_items_in_batch)
        check_not_repacked(self.model, "Training")
        ids = inputs.pop(ROW_KEY)
        kept = {k: inputs[k] for k in ("input_ids", "labels", "cu_seq_lens_q") if k in inputs}
        recorder.discard()
        loss = super().training_step(model, inputs, num_items_in_batch)
        states = None
        if self.args.resonance_inflight_state == "live":
            states = live_adam_states(self.optimizer, self.resonance_targets)
        recorder.record_batch(ids, kept, self._resonance_epoch, self.state.global_step, states)
        return loss

    def evaluate(self, *args, **kwargs):
        with cpu_4bit_repack_guard(self.model):  # see quantized.py: keeps 4-bit CPU models trainable after eval
            return super().evaluate(*args, **kwargs)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """`SFTTrainer.train`, scoring the train dataset as `resonance_when` says (result in `scored_dataset`)."""
        args = self.args
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(args.output_dir)
        if checkpoint:
            self._restore_resonance(checkpoint)
        if args.resonance_when == "before_train" and self.scored_dataset is None:
            self.scored_dataset = self.score()
        recorder = self._resonance_recorder
        if recorder is not None:
            # R from the starting weights
            self._resonance_reference_info = inflight_reference(
                self.scoring_setup(), recorder, args.resonance_optimizer
            )
            recorder.attach(self.model)
        try:
            output = super().train(
                resume_from_checkpoint=resume_from_checkpoint,
                trial=trial,
                ignore_keys_for_eval=ignore_keys_for_eval,
                **kwargs,
            )
        finally:
            if recorder is not None:
                recorder.detach()
        if recorder is not None:
            self._gather_inflight()
            self.scored_dataset = self._inflight_dataset(warn=True)
        if args.resonance_when == "after_train":
            self.scored_dataset = self.score()
        if self.scored_dataset is not None and self.args.should_save:
            self.save_scores(args.output_dir)
        return output

    @property
    def _resonance_epoch(self) -> int:
        epoch = self.state.epoch or 0.0
        nearest = round(epoch)
        return int(nearest) if abs(epoch - nearest) < 1e-6 else math.floor(epoch)

    def _gather_inflight(self) -> None:
        self._resonance_gathers = getattr(self, "_resonance_gathers", 0) + 1
        gather_inflight(self._resonance_recorder, self.accelerator, self.args.output_dir, self._resonance_gathers)

    def _inflight_dataset(self, warn: bool = False) -> Dataset:
        """The train rows with their in-flight score columns (`inflight_scores.inflight_dataset`)."""
        args, source, trl_rows = self.args, self._resonance_source, self._resonance_trl_rows
        if self._resonance_lengths is None:  # tokenized once per trainer, as TRL reads the rows
            self._resonance_lengths = loss_token_counts(self.prepare_scoring_dataset, trl_rows)
        provenance = {**self.resonance_provenance(), "inflight_state": args.resonance_inflight_state}
        if self._resonance_map is not None:
            provenance["columns_read_as"] = self._resonance_map.as_dict()
        on_prompt = loss_on_prompt(
            trl_rows.column_names, args.dataset_text_field, getattr(self, "completion_only_loss", None),
            args.assistant_only_loss,
        )  # fmt: skip
        return inflight_dataset(
            self._resonance_recorder, source, args.resonance_column, provenance, self._resonance_lengths,
            reference_info=self._resonance_reference_info, on_prompt=on_prompt, warn=warn,
        )  # fmt: skip

    def save_scores(self, folder: str | os.PathLike) -> Path:
        """`folder/resonance_scores.parquet`: `row` and every score column of `scored_dataset`, with provenance."""
        return write_scores_file(self.scored_dataset, folder, self.args.resonance_column)

    def _save_checkpoint(self, model, trial):
        recorder = self._resonance_recorder
        if recorder is not None:  # every process takes part, then the saved card and scores are complete
            self._gather_inflight()
            self.scored_dataset = self._inflight_dataset()
        super()._save_checkpoint(model, trial)
        if recorder is not None and self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            write_atomic(folder / STATE_FILE, json.dumps({"inflight": recorder.state_dict()}))

    def _restore_resonance(self, checkpoint: str | os.PathLike) -> None:
        """Scores saved beside `checkpoint` (in-flight epochs so far, or a before-train score) come back."""
        folder = Path(checkpoint)
        if self._resonance_recorder is not None and (folder / STATE_FILE).is_file():
            self._resonance_recorder.load_state_dict(json.loads((folder / STATE_FILE).read_text())["inflight"])
        elif self.args.resonance_when == "before_train" and (folder / SCORES_FILE).is_file():
            scores = load_scored(folder / SCORES_FILE)
            if len(scores) == len(self._resonance_source):
                clean = self._resonance_source.remove_columns(
                    [c for c in self._resonance_source.column_names if c in scores.column_names]
                )
                restored = concatenate_datasets([clean, scores.remove_columns(SCORES_ROW)], axis=1)
                self.scored_dataset = with_provenance(restored, **read_provenance(scores))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """`Trainer.save_model`, plus the scores file beside the weights when there are scores (the full
        resonance model card is `resofilter_hf.hub.model_card.write_checkpoint_card`, which `resofilter train` calls)."""
        super().save_model(output_dir, _internal_call)
        if self.scored_dataset is not None and self.args.should_save:
            self.save_scores(output_dir or self.args.output_dir)


def _trl_rows(args, formatting_func, train_dataset, eval_dataset):
    """(the train set's layout, the train and eval sets with TRL's columns), the train rows checked. The layout is
    read once (a recognised one is said once); TRL trains on, and scores read, TRL's columns. Rows TRL's
    preparation would crash on fail here, by row index and field."""
    if isinstance(train_dataset, Dataset):
        check_no_row_id(train_dataset.column_names)
    mapping = _layout(args, formatting_func, train_dataset)
    train_dataset = mapping.apply(train_dataset) if mapping else train_dataset
    check_train_rows(train_dataset, args.dataset_text_field, formatting_func)
    return mapping, train_dataset, _with_trl_columns(args, formatting_func, eval_dataset)


def _layout(args, formatting_func, rows) -> ColumnMap | None:
    """How `rows` become TRL's columns (`schemas.column_map`; None: they are, or a `formatting_func` reads them)."""
    if formatting_func is not None or not isinstance(rows, (Dataset, IterableDataset)):
        return None
    return column_map(rows, args.dataset_text_field, args.prompt_column, args.completion_column, args.messages_column)


def _with_trl_columns(args, formatting_func, rows):
    """`rows` (a dataset, a dict of them, or None) with TRL's columns."""
    if isinstance(rows, dict):
        return {name: _with_trl_columns(args, formatting_func, split) for name, split in rows.items()}
    mapping = _layout(args, formatting_func, rows)
    return mapping.apply(rows) if mapping else rows
