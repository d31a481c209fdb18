"""Results out: a `Dataset` comes back as a `Dataset` (its rows joined to the result columns, memory-mapped from
the scoring folder); a stream comes back as a stream over Parquet parts, one per window, in a folder that holds
exactly one run (a manifest names its parts; a new run replaces them only when it completes)."""

import contextlib
import copy
import json
import os
import re
from pathlib import Path

import pyarrow as pa
from datasets import Dataset, IterableDataset, concatenate_datasets, load_dataset
from datasets.table import InMemoryTable

from ..engine.files import FolderLock, check_not_input, remove_stale_partials, write_atomic
from ..engine.fingerprint import json_digest
from ..engine.shards import write_arrow
from ..provenance import PARTS_MANIFEST, parts_manifest, run_scoring, with_provenance, write_parquet
from .job import ScoringJob, logger
from .source import RowSource


PART_PREFIX = "part-"
OUR_PART = re.compile(r"^part-[0-9a-f]{8}-[0-9a-f]{8}-\d{5}\.parquet$")  # part-<key>-<run token>-<window>


class DatasetSink:
    """Collects each window's result table; at the end joins them to the source rows column-wise."""

    def __init__(self, source: RowSource, job: ScoringJob):
        self.source, self.job = source, job
        self.tables: list[pa.Table] = []

    def open(self):
        return contextlib.nullcontext(self)

    def add(self, window: int, offset: int, rows: Dataset, table: pa.Table) -> None:
        self.tables.append(table)

    def finish(self, scoring: dict) -> Dataset:
        clean = self.source.dataset
        table = pa.concat_tables(self.tables) if self.tables else self.job.empty_result()
        scores = self._memory_mapped(table)
        if len(clean):
            scored = concatenate_datasets([clean, scores], axis=1)
        else:  # concatenate_datasets leaves empty datasets out, and their columns with them
            rows = clean.with_format("arrow")[:]
            for name in table.column_names:
                rows = rows.append_column(name, table.column(name))
            info = copy.deepcopy(clean.info)
            info.features = None
            scored = Dataset(InMemoryTable(rows), info=info)
        scored = with_provenance(
            scored, replace_all=True, scoring=run_scoring(scoring, clean.column_names, table.column_names)
        )
        user_format = self.source.user_format
        if user_format["type"] is not None:
            scored = scored.with_format(user_format["type"], **user_format["format_kwargs"])
        return scored

    def _memory_mapped(self, table: pa.Table) -> Dataset:
        """`table` memory-mapped from a result file in the scoring folder (in memory when the folder is not
        kept). The file is named by the output column names, so a run with other names never reads it."""
        job = self.job
        path = job.folder / f"scores-{json_digest(table.column_names)[:16]}.arrow"
        if job.resume and job.is_main:
            try:
                if job.fresh() or not path.is_file():
                    write_arrow(table, path)
            except OSError as err:
                logger.warning(f"Could not write {path} ({err}); the scores stay in memory.")
        job.processes.wait_for_everyone()
        if job.resume and path.is_file():
            mapped = Dataset.from_file(str(path))
            if mapped.num_rows == table.num_rows and mapped.column_names == table.column_names:
                return mapped
        return Dataset(InMemoryTable(table))


class PartsSink:
    """Writes each window's scored rows as one Parquet part of `folder` (main process), then the manifest."""

    def __init__(self, folder: str | os.PathLike, source: RowSource, job: ScoringJob, provenance: dict):
        self.folder = Path(folder).expanduser()
        self.job, self.provenance = job, provenance
        self.input_columns = list(source.features)  # the stream's columns that go into every part
        self.run = f"{job.key[:8]}-{job.token}"  # every process names the parts alike
        self.parts: list[Path] = []
        self.n = 0
        check_not_input(self.folder, source.files)
        self.lock = FolderLock(self.folder, "writing scored parts")
        self.old: list[str] = []
        if job.is_main:
            previous_parts(self.folder)  # refused before any compute when the folder is not ours to fill

    @contextlib.contextmanager
    def open(self):
        """Holds the folder for the run; on failure, this run's parts go and the folder is as it was."""
        if self.job.is_main:
            self.lock.acquire()
            self.old = previous_parts(self.folder)  # read under the lock: what the last run left
            remove_stale_partials(self.folder)
        try:
            yield self
        except BaseException:
            for part in self.parts:
                part.unlink(missing_ok=True)
            raise
        finally:
            self.lock.release()

    def add(self, window: int, offset: int, rows: Dataset, table: pa.Table) -> None:
        path = self.folder / f"{PART_PREFIX}{self.run}-{window:05d}.parquet"
        self.parts.append(path)
        self.n += len(rows)
        if self.job.is_main:
            scored = concatenate_datasets([rows, Dataset(InMemoryTable(table))], axis=1)
            write_parquet(scored, path, {"scoring": {**self.provenance, "window_rows": [offset, offset + len(rows)]}})

    def finish(self, scoring: dict) -> IterableDataset:
        """The manifest (naming exactly this run's parts), then the previous run's parts removed; the parts as a
        stream carrying the provenance."""
        scoring = run_scoring(scoring, self.input_columns, self.job.empty_result().column_names)
        if self.job.is_main:
            manifest = {"run": self.run, "rows": self.n, "parts": [p.name for p in self.parts], "scoring": scoring}
            write_atomic(self.folder / PARTS_MANIFEST, json.dumps(manifest, sort_keys=True, default=str))
            for name in self.old:
                if name not in manifest["parts"]:
                    (self.folder / name).unlink(missing_ok=True)
        self.job.processes.wait_for_everyone()
        stream = load_dataset("parquet", data_files=[str(p) for p in self.parts], split="train", streaming=True)
        return with_provenance(stream, replace_all=True, scoring=scoring)


def previous_parts(folder: Path) -> list[str]:
    """The parts an earlier run left in `folder` (named by its manifest, or of our pattern when it was killed
    before writing one); refuses a folder holding anything else, which is not ours to replace."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise ValueError(f"`parts_dir` {folder} is a file, not a folder: give a folder for the scored parts.")
    listed = []
    with contextlib.suppress(ValueError, OSError):  # a broken manifest: its parts are still ours by their names
        listed = [str(name) for name in (parts_manifest(folder) or {}).get("parts", [])]
    ours = {p.name for p in folder.iterdir() if OUR_PART.match(p.name)} | set(listed)
    foreign = sorted(
        p.name for p in folder.iterdir() if p.name not in ours and p.name not in (PARTS_MANIFEST, FolderLock.NAME)
        and not p.name.endswith(".partial")
    )  # fmt: skip
    if foreign:
        raise ValueError(
            f"`parts_dir` {folder} holds files resofilter-hf did not write there ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); scoring replaces a folder's parts, so give an empty or new "
            "folder."
        )
    return sorted(ours)
