"""One `score()` call's work on disk: its fingerprinted folder, its lock, its shards, and each window's result.

The folder is keyed by everything a score depends on (`ScoringSetup.fingerprint`), so a changed input starts a
new folder and old folders are named in a notice, never reused. Each process scores its share of every window's
shards (round robin) into Parquet files with completion markers, so a killed run resumes; after a barrier, every
process reads the window's shards from the (shared) folder: no result goes over the wire. One job holds a folder
at a time (a lock naming the holder); a partial file is removed only once its writer is gone.
"""

import logging
import secrets
import shutil
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from datasets.utils import logging as datasets_logging
from tqdm.auto import tqdm

from ..engine.files import FolderLock, remove_stale_partials
from ..engine.fingerprint import json_digest
from ..engine.rows import ROW_ID, STATUS_NO_TOKENS, STATUS_OK, STATUS_TRUNCATED, truncated_rows, with_row_flags
from ..engine.scorer import JobProgress
from ..engine.shards import ANATOMY_COLUMNS, ID, STATUS, ShardStore
from ..reference import ReferenceSet
from .setup import ScoringSetup


logger = logging.getLogger("resofilter_hf")


def prepare_window(setup: ScoringSetup, rows: Dataset, offset: int, eligible: list[int]) -> pa.Table:
    """The window's eligible rows through TRL's preparation: an Arrow table (id, input_ids, labels)."""
    with_ids = rows.add_column(ROW_ID, list(range(offset, offset + len(rows)))).select(eligible)
    quiet = offset > 0 and datasets_logging.is_progress_bar_enabled()  # TRL's bars once, not once per window
    if quiet:
        datasets_logging.disable_progress_bar()
    try:
        prepared = setup.prepare(with_ids, True) if len(with_ids) else with_ids
    finally:
        if quiet:
            datasets_logging.enable_progress_bar()
    if len(prepared) == 0:
        return pa.table({ID: pa.array([], pa.int64()), "input_ids": pa.array([], pa.list_(pa.int64()))})
    table = prepared.select_columns([ROW_ID, "input_ids", "labels"]).with_format("arrow")[:]
    types = [pa.int64(), table.schema.field("input_ids").type, table.schema.field("labels").type]
    return table.rename_columns([ID, "input_ids", "labels"]).cast(
        pa.schema(list(zip([ID, "input_ids", "labels"], types)))
    )


def _shared_token(processes) -> str:
    """A random token every process of the run agrees on (the main process's)."""
    token = [secrets.token_hex(4)]
    if processes.num_processes > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(token, src=0)
    return token[0]


class ScoringJob:
    """One `score()` call: its folder, its shards, its progress, and the processes it runs on."""

    def __init__(self, setup: ScoringSetup, data_digest: str, total: int | None, reference=None):
        self.setup, self.settings, self.processes = setup, setup.settings, setup.processes
        self.scorer = setup.scorer()
        self.reference = ReferenceSet.of(setup, reference)  # alignment: its rows key the folder
        self.rank, self.world = self.processes.process_index, self.processes.num_processes
        self.is_main = self.processes.is_main_process
        self.key = setup.fingerprint(self.scorer, data_digest, self.reference and self.reference.digest)
        self.root = Path(self.settings.output_dir) / "resonance"
        self.resume = self.settings.resume
        self.token = _shared_token(self.processes)  # this run's, the same on every process
        unsaved = f".unsaved-{self.key}-{self.token}"  # one per run: never shared, never reused
        self.folder = self.root / (self.key if self.resume else unsaved)
        self.store = ShardStore(self.folder, anatomy=self.settings.anatomy, alignment=self.reference is not None)
        self.started = time.time()
        self.total = total
        self.progress: JobProgress | None = None

    @contextmanager
    def claimed(self):
        """The folder, held by this job (the main process's lock) from set-up to the end, released on any exit."""
        lock = FolderLock(self.folder, "scoring")
        if self.is_main:
            lock.acquire()
            if self.folder.is_dir():
                remove_stale_partials(self.folder)
            self._notice_stale()
        self.processes.wait_for_everyone()
        enabled = self.scorer.show_progress and self.is_main
        self.progress = JobProgress(self.store, self.total, enabled, self.world, "Scoring resonance")
        try:
            yield self
        finally:
            self.progress.close()
            lock.release()
            if not self.resume and self.is_main:
                shutil.rmtree(self.folder, ignore_errors=True)

    def _notice_stale(self) -> None:
        if not self.root.is_dir():
            return
        others = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name[0] != ".")
        others = [name for name in others if name not in (self.key, "inflight")]
        if others:
            logger.warning(
                f"Scoring into {self.folder}. Not reusing {len(others)} other scoring folder(s) in {self.root}, "
                f"made from another model, data or settings: {', '.join(others)}. Delete them to free the space."
            )

    # ---- one window ------------------------------------------------------------------------------------------

    def run_window(self, window: int, rows: Dataset, offset: int, statuses: list[str]) -> pa.Table:
        """Prepare, plan and score one window; returns its result table (one row per input row, in order, with
        the output column names, statuses final: `nonfinite`, `truncated`, `resonance_truncated`)."""
        eligible = [i for i, s in enumerate(statuses) if s == STATUS_OK]
        prepared = prepare_window(self.setup, rows, offset, eligible)
        cut = truncated_rows(rows, offset, prepared, self.settings.max_length, self.setup.prepare)
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
        self.processes.wait_for_everyone()
        return with_row_flags(self._join(names, offset, len(rows)), self.settings.column, cut, offset)

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
            untruncated = self.setup.prepare(untruncated, False)
            had_tokens = {r[ROW_ID] for r in untruncated if any(label != -100 for label in r["labels"][1:])}
            for i in dropped:
                statuses[i] = STATUS_TRUNCATED if offset + i in had_tokens else STATUS_NO_TOKENS
        columns = {ID: ids, STATUS: [statuses[i - offset] for i in ids.tolist()], "tokens": np.zeros(len(ids), int)}
        for key in ("score", "loss", *ANATOMY_COLUMNS, "alignment"):
            columns[key] = np.full(len(ids), np.nan)
        self.store.write(name, columns, digest, self.rank)
        return name

    def _join(self, names: list[str], first: int, n: int) -> pa.Table:
        """The shards `names`, one row per id `first..first+n-1` in order, with the output column names."""
        table = self.store.read(names)
        table = table.take(pc.sort_indices(table, [(ID, "ascending")]))
        ids = table.column(ID).to_numpy()
        if not np.array_equal(ids, np.arange(first, first + n)):
            counts = np.bincount(ids - first, minlength=n) if len(ids) else np.zeros(n, int)
            raise RuntimeError(
                f"The shards in {self.folder} do not hold rows {first}..{first + n - 1} exactly once: missing "
                f"{np.flatnonzero(counts == 0)[:5] + first}, doubled {np.flatnonzero(counts > 1)[:5] + first}."
            )
        names_out = {"score": self.settings.column, "tokens": "resonance_tokens", STATUS: "resonance_status"}
        keep = ["score", "loss", "tokens", *(ANATOMY_COLUMNS if self.settings.anatomy else ())]
        keep += ["alignment"] * (self.reference is not None) + [STATUS]
        return pa.table({names_out.get(k, f"resonance_{k}"): table.column(k) for k in keep})

    def empty_result(self) -> pa.Table:
        """The result table of no rows (a `Dataset` of 0 rows still gets every result column)."""
        return with_row_flags(self._join([], 0, 0), self.settings.column, set(), 0)

    # ---- the end ---------------------------------------------------------------------------------------------

    def fresh(self) -> bool:
        """Whether this run wrote any shard (else every result came back from an earlier run's shards)."""
        return any(m.get("written_at", 0) >= self.started for m in self.store.markers().values())

    def summary(self, statuses: Counter) -> None:
        """One line: rows, scored, resumed, unscored by status, wall time; after the bar's last frame (closed here),
        so that in a log file it is a line of its own."""
        if not self.is_main:
            return
        self.progress.close()
        n, ok = sum(statuses.values()), statuses[STATUS_OK]
        resumed = 0
        if self.resume and self.folder.is_dir():
            markers = self.store.markers().items()
            resumed = sum(m["rows"] for name, m in markers if "-s" in name and m.get("written_at", 0) < self.started)
        counts = {s: c for s, c in sorted(statuses.items()) if s != STATUS_OK}
        line = (
            f"resonance: {n} rows, {ok} scored ({resumed} resumed from {self.folder}), "
            f"{n - ok} unscored{f' {counts}' if counts else ''}, "
            f"{time.time() - self.started:.1f} s wall"
        )
        if self.scorer.show_progress:
            tqdm.write(line, file=sys.stderr)
        else:
            logger.info(line)
