"""The scoring pipeline behind `ResonanceTrainer.score()` and `.losses()`.

dataset -> row checks -> TRL's own preparation, a window of rows at a time, with row ids -> the engine's
length-sorted batches -> Parquet shards in one folder per fingerprint -> the shards joined to the source rows.

Nothing holds every row in Python: a window of prepared rows lives as an Arrow table, results go to disk as they
are made, and the final columns are one memory-mapped Arrow file joined to the dataset column-wise. The folder
is keyed by a digest of the full weights and buffers, the model config, the tokenizer and chat template, the
targets, every setting a score depends on and the rows themselves, so a changed input starts a new folder and
old folders are named in a notice, never reused. Each process scores its share of every window's shards and,
after a barrier, reads everyone's shards from the (shared) folder: no result goes over the wire.
"""

import copy
import logging
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, IterableDataset, concatenate_datasets
from datasets.table import InMemoryTable
from datasets.utils import logging as datasets_logging
from tqdm.auto import tqdm

from .confounds import scored_confounds
from .engine.compat import prepare_dataset
from .engine.fingerprint import combine, config_digest, json_digest, table_digest, tensor_digest, tokenizer_digest
from .engine.finite import check_finite_weights
from .engine.inflight import scoring_collator
from .engine.rows import (
    ROW_ID,
    STATUS_NO_TOKENS,
    STATUS_OK,
    STATUS_TRUNCATED,
    check_rows_windowed,
    claim_result_columns,
    truncated_rows,
    with_row_flags,
)
from .engine.scorer import JobProgress, ResonanceScorer, scoring_mode
from .engine.shards import ANATOMY_COLUMNS, ID, STATUS, ShardStore, write_arrow
from .provenance import read_provenance, with_provenance
from .reference import ReferenceSet


if TYPE_CHECKING:
    from .trainer import ResonanceTrainer

logger = logging.getLogger("resofilter_hf")

WINDOW_ROWS = 16384  # rows prepared (and length-sorted) together
RESULT_FILE = "scores.arrow"


def without_result_columns(dataset: Dataset, column: str) -> Dataset:
    """`dataset` less an earlier scoring's result columns (named in a warning); a user column is never taken."""
    earlier = (read_provenance(dataset).get("scoring") or {}).get("column")
    return dataset.remove_columns(claim_result_columns(dataset.column_names, column, earlier))


def prepare_for_scoring(trainer: "ResonanceTrainer", dataset: Dataset, truncate: bool = True) -> Dataset:
    """`dataset` through TRL's own preparation (chat template, loss masks, truncation), never packed. Fully masked
    rows are dropped, as TRL drops them; other columns are kept. `truncate=False` skips the `max_length` cut (to
    tell truncated rows from rows without loss tokens)."""
    args = trainer.args
    if not truncate:
        args = copy.copy(args)
        args.max_length = None
    formatting = getattr(trainer, "_formatting_func", None)
    return prepare_dataset(trainer, dataset, trainer.processing_class, args, formatting, "resonance")


def _prepare(trainer: "ResonanceTrainer", window: Dataset, offset: int, eligible: list[int]) -> pa.Table:
    """The window's eligible rows through TRL's preparation: an Arrow table (id, input_ids, labels)."""
    with_ids = window.add_column(ROW_ID, list(range(offset, offset + len(window)))).select(eligible)
    quiet = offset > 0 and datasets_logging.is_progress_bar_enabled()  # TRL's bars once, not once per window
    if quiet:
        datasets_logging.disable_progress_bar()
    try:
        prepared = trainer.prepare_scoring_dataset(with_ids) if len(with_ids) else with_ids
    finally:
        if quiet:
            datasets_logging.enable_progress_bar()
    if len(prepared) == 0:
        return pa.table({ID: pa.array([], pa.int64()), "input_ids": pa.array([], pa.list_(pa.int64()))})
    table = prepared.select_columns([ROW_ID, "input_ids", "labels"]).with_format("arrow")[:]
    return table.rename_columns([ID, "input_ids", "labels"]).cast(
        pa.schema(
            [
                (ID, pa.int64()),
                ("input_ids", table.schema.field("input_ids").type),
                ("labels", table.schema.field("labels").type),
            ]
        )
    )


class ScoringJob:
    """One `score()` call: its folder, its shards, its progress, and the processes it runs on."""

    def __init__(self, trainer: "ResonanceTrainer", data_digest: str, total: int | None, reference=None):
        self.trainer, self.args = trainer, trainer.args
        self.scorer = trainer.scorer()
        self.reference = ReferenceSet.of(trainer, reference)  # alignment: its rows key the folder
        self.accelerator = trainer.accelerator
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.key = self._fingerprint(data_digest)
        root = Path(self.args.output_dir) / "resonance"
        self.resume = self.args.resonance_resume
        self.folder = root / (self.key if self.resume else f".unsaved-{self.key}")
        self.store = ShardStore(self.folder, anatomy=self.args.resonance_anatomy, alignment=self.reference is not None)
        self.names: list[str] = []
        self.cut: set[int] = set()  # rows max_length cut after their first loss token
        self.started = time.time()
        if self.accelerator.is_main_process:
            if not self.resume:
                shutil.rmtree(self.folder, ignore_errors=True)
            elif self.folder.is_dir():
                self.store.remove_partials()
            self._notice_stale(root)
        self.accelerator.wait_for_everyone()
        enabled = self.scorer.show_progress and self.accelerator.is_main_process
        self.progress = JobProgress(self.store, total, enabled, self.world, "Scoring resonance")

    def _fingerprint(self, data_digest: str) -> str:
        trainer, args = self.trainer, self.args
        formatting = getattr(trainer, "_formatting_func", None)
        preparation = {
            "max_length": args.max_length,
            "completion_only_loss": getattr(trainer, "completion_only_loss", None),
            "assistant_only_loss": args.assistant_only_loss,
            "text_field": args.dataset_text_field,
            "dataset_kwargs": args.dataset_kwargs,
            "eos_token": args.eos_token,
            "pad_token": args.pad_token,
            "formatting_func": getattr(formatting, "__qualname__", None),
            "formatting_code": getattr(getattr(formatting, "__code__", None), "co_code", b"").hex() or None,
            "window_rows": WINDOW_ROWS,
        }
        return combine(
            tensor_digest(trainer.model),
            config_digest(trainer.model),
            tokenizer_digest(trainer.processing_class),
            json_digest([self.scorer.settings(), preparation, self.reference and self.reference.digest]),
            data_digest,
        )

    def _notice_stale(self, root: Path) -> None:
        if not root.is_dir():
            return
        others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != self.key and p.name[0] != ".")
        others = [name for name in others if name != "inflight"]
        if others:
            logger.warning(
                f"Scoring into {self.folder}. Not reusing {len(others)} other scoring folder(s) in {root}, made from "
                f"another model, data or settings: {', '.join(others)}. Delete them to free the space."
            )

    # ---- one window ------------------------------------------------------------------------------------------

    def run_window(self, window: int, rows: Dataset, offset: int, statuses: list[str]) -> list[str]:
        """Prepare, plan and score one window; write its unscored rows; returns the names of its shards."""
        eligible = [i for i, s in enumerate(statuses) if s == STATUS_OK]
        prepared = _prepare(self.trainer, rows, offset, eligible)
        self.cut |= truncated_rows(rows, offset, prepared, self.args.max_length, self.trainer.prepare_scoring_dataset)
        if window == 0 and self.scorer.spec.transform.optimizer == "adamw_state":
            order = np.argsort(prepared.column(ID).to_numpy(), kind="stable")
            state_rows = prepared.take(pa.array(order[: self.scorer.state_samples], pa.int64())).to_pylist()
            with self.scorer.session() as capture:
                self.scorer.prepare_states(state_rows, capture)
        if self.reference is not None and prepared.num_rows:  # R after the settled moments, once
            self.reference.attach(self.scorer)
        self.progress.start_window(window)
        names = []
        if prepared.num_rows:
            plan = self.scorer.plan(prepared, window)
            with self.scorer.session() as capture:
                self.scorer.score_window(plan, self.store, capture, self.progress)
            names = [plan.shard_name(k) for k in range(len(plan.shards))]
        names.append(self._unscored_shard(window, rows, offset, statuses, prepared))
        self.progress.end_window(len(rows))
        self.names.extend(names)
        return names

    def _unscored_shard(self, window: int, rows: Dataset, offset: int, statuses: list[str], prepared) -> str:
        """The window's rows without a score (checks, or dropped by TRL's preparation), with their statuses."""
        name = f"w{window:06d}-unscored"
        if window % self.world != self.rank:
            return name
        present = set(prepared.column(ID).to_pylist())
        statuses = list(statuses)
        dropped = [i for i, s in enumerate(statuses) if s == STATUS_OK and offset + i not in present]
        ids = np.array([offset + i for i, s in enumerate(statuses) if s != STATUS_OK or offset + i not in present])
        ids = ids.astype(np.int64)
        digest = json_digest([ids.tolist(), [statuses[i - offset] for i in ids.tolist()]])
        if self.store.is_done(name, digest, ids):
            return name
        if dropped:  # was it truncation, or were there never any loss tokens?
            untruncated = rows.add_column(ROW_ID, list(range(offset, offset + len(rows)))).select(dropped)
            untruncated = self.trainer.prepare_scoring_dataset(untruncated, truncate=False)
            had_tokens = {r[ROW_ID] for r in untruncated if any(label != -100 for label in r["labels"][1:])}
            for i in dropped:
                statuses[i] = STATUS_TRUNCATED if offset + i in had_tokens else STATUS_NO_TOKENS
        columns = {ID: ids, STATUS: [statuses[i - offset] for i in ids.tolist()], "tokens": np.zeros(len(ids), int)}
        for key in ("score", "loss", *ANATOMY_COLUMNS, "alignment"):
            columns[key] = np.full(len(ids), np.nan)
        self.store.write(name, columns, digest, self.rank)
        return name

    # ---- results ---------------------------------------------------------------------------------------------

    def join(self, names: list[str], first: int, n: int) -> pa.Table:
        """The shards `names`, one row per id `first..first+n-1` in order, with the user's column names."""
        table = self.store.read(names)
        table = table.take(pc.sort_indices(table, [(ID, "ascending")]))
        ids = table.column(ID).to_numpy()
        if not np.array_equal(ids, np.arange(first, first + n)):
            counts = np.bincount(ids - first, minlength=n) if len(ids) else np.zeros(n, int)
            raise RuntimeError(
                f"The shards in {self.folder} do not hold rows {first}..{first + n - 1} exactly once: missing "
                f"{np.flatnonzero(counts == 0)[:5] + first}, doubled {np.flatnonzero(counts > 1)[:5] + first}."
            )
        names_out = {"score": self.args.resonance_column, "tokens": "resonance_tokens", STATUS: "resonance_status"}
        keep = ["score", "loss", "tokens", *(ANATOMY_COLUMNS if self.args.resonance_anatomy else ())]
        keep += ["alignment"] * (self.reference is not None) + [STATUS]
        return pa.table({names_out.get(k, f"resonance_{k}"): table.column(k) for k in keep})

    def memory_mapped(self, table: pa.Table) -> Dataset:
        """`table` as a Dataset memory-mapped from the scoring folder (in memory when the folder is not kept)."""
        path = self.folder / RESULT_FILE
        if self.resume and self.accelerator.is_main_process:
            markers = self.store.markers().values()
            fresh = any(m.get("written_at", 0) >= self.started for m in markers)
            try:
                if fresh or not path.is_file():
                    write_arrow(table, path)
            except OSError as err:
                logger.warning(f"Could not write {path} ({err}); the scores stay in memory.")
        self.accelerator.wait_for_everyone()
        if self.resume and path.is_file():
            mapped = Dataset.from_file(str(path))
            if mapped.num_rows == table.num_rows:
                return mapped
        return Dataset(InMemoryTable(table))

    def finish(self, n: int, statuses: list[str]) -> None:
        self.progress.close()
        self.accelerator.wait_for_everyone()
        if not self.resume and self.accelerator.is_main_process:
            shutil.rmtree(self.folder, ignore_errors=True)
        if self.accelerator.is_main_process:
            resumed = sum(m["rows"] for name, m in self._markers_before().items() if "-s" in name)
            counts = {s: statuses.count(s) for s in sorted(set(statuses) - {STATUS_OK})}
            line = (
                f"resonance: {n} rows, {statuses.count(STATUS_OK)} scored ({resumed} resumed from {self.folder}), "
                f"{n - statuses.count(STATUS_OK)} unscored{f' {counts}' if counts else ''}, "
                f"{time.time() - self.started:.1f} s wall"
            )
            if self.scorer.show_progress:
                tqdm.write(line, file=sys.stderr)
            else:
                logger.info(line)

    def _markers_before(self) -> dict[str, dict]:
        if not self.resume or not self.folder.is_dir():
            return {}
        return {k: m for k, m in self.store.markers().items() if m.get("written_at", 0) < self.started}


def _finish_dataset(job: ScoringJob, clean: Dataset, table: pa.Table, statuses: list[str]) -> Dataset:
    n = len(clean)
    unscored = [i for i, s in enumerate(statuses) if s != STATUS_OK]
    if unscored:
        counts = {s: statuses.count(s) for s in sorted(set(statuses) - {STATUS_OK})}
        warnings.warn(
            f"{len(unscored)} of {n} rows have no resonance score (NaN), by status: {counts}. "
            f"First rows: {unscored[:5]}.",
            UserWarning,
            stacklevel=4,
        )
    scores = job.memory_mapped(table)
    if n:
        scored = concatenate_datasets([clean, scores], axis=1)
    else:  # concatenate_datasets leaves empty datasets out, and their columns with them
        rows = clean.with_format("arrow")[:]
        for name in table.column_names:
            rows = rows.append_column(name, table.column(name))
        info = copy.deepcopy(clean.info)
        info.features = None
        scored = Dataset(InMemoryTable(rows), info=info)
    scoring = job.trainer.resonance_provenance(n, n - len(unscored))
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names[:-1]}
    if job.reference is not None:
        scoring["reference"] = job.reference.info
    scoring["confounds"] = scored_confounds(columns, job.args.resonance_column)
    return with_provenance(scored, scoring=scoring)


def score_dataset(
    trainer: "ResonanceTrainer",
    dataset: Dataset | IterableDataset | None = None,
    *,
    parts_dir: str | None = None,
    max_rows: int | None = None,
    reference: Dataset | str | None = None,
) -> Dataset | IterableDataset:
    """What `ResonanceTrainer.score` returns (see there)."""
    args = trainer.args
    source = trainer._resonance_source if dataset is None else dataset
    check_finite_weights(trainer.model)  # NaN weights would make every score NaN: refused before any compute
    if isinstance(source, IterableDataset):
        from .streaming import score_stream  # a stream is scored a window at a time, with the same job

        return score_stream(trainer, source, parts_dir, max_rows)
    if not isinstance(source, Dataset):
        raise TypeError(f"score() needs a datasets.Dataset or IterableDataset, got {type(source).__name__}.")
    user_format = source.format
    clean = without_result_columns(source.with_format(None), args.resonance_column)
    if max_rows is not None:
        clean = clean.select(range(min(max_rows, len(clean))))
    n = len(clean)
    statuses = check_rows_windowed(clean, args.dataset_text_field, WINDOW_ROWS)  # every row, before any compute
    job = ScoringJob(trainer, table_digest(clean.with_format("arrow").iter(batch_size=WINDOW_ROWS)), n, reference)
    for window, start in enumerate(range(0, n, WINDOW_ROWS)):
        rows = clean.select(range(start, min(n, start + WINDOW_ROWS)))
        job.run_window(window, rows, start, statuses[start : start + len(rows)])
    job.accelerator.wait_for_everyone()
    table = with_row_flags(job.join(job.names, 0, n), args.resonance_column, job.cut, args.max_length)
    statuses = table.column("resonance_status").to_pylist()
    job.finish(n, statuses)
    scored = _finish_dataset(job, clean, table, statuses)
    if user_format["type"] is not None:
        scored = scored.with_format(user_format["type"], **user_format["format_kwargs"])
    return scored


def dataset_losses(
    trainer: "ResonanceTrainer", dataset: Dataset, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """What `ResonanceTrainer.losses` returns (see there)."""
    n = len(dataset)
    losses, tokens = np.full(n, np.nan), np.zeros(n, dtype=np.int64)
    scorer = trainer.scorer(batch_size)
    plain = dataset.with_format(None)
    for window, start in enumerate(range(0, n, WINDOW_ROWS)):
        rows = plain.select(range(start, min(n, start + WINDOW_ROWS)))
        prepared = _prepare(trainer, rows, start, list(range(len(rows))))
        if not prepared.num_rows:
            continue
        plan = scorer.plan(prepared, window)
        with scoring_mode(scorer.model, scorer.targets):
            for batches in plan.shards:
                for batch in batches:
                    part = plan.rows(batch)
                    values, counts = scorer.loss_batch(part)
                    for row, value, count in zip(part, values, counts):
                        losses[row[ID]], tokens[row[ID]] = value, count
    return losses, tokens


def build_scorer(trainer: "ResonanceTrainer", batch_size: int | None = None) -> ResonanceScorer:
    """What `ResonanceTrainer.scorer` returns (see there)."""
    args = trainer.args
    return ResonanceScorer(
        trainer.model,
        trainer.resonance_targets,
        trainer._score_spec(),
        scoring_collator(trainer.data_collator),
        batch_size=batch_size or args.resonance_batch_size,
        batch_tokens=args.resonance_batch_tokens,
        state_samples=args.resonance_state_samples,
        process_index=trainer.accelerator.process_index,
        num_processes=trainer.accelerator.num_processes,
        show_progress=not args.disable_tqdm,
    )
