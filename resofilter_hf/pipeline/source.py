"""Rows in: a `Dataset` or a stream (`IterableDataset`), read a window at a time with one fixed schema.

A `Dataset` is a stream whose length is known: both give the pipeline the same windows (a `Dataset` of at most
`WINDOW_ROWS` rows and its offset), so every later stage is one code path. What differs is only what can be known
before any compute: a `Dataset`'s rows are all checked up front and its digest covers every row; a stream's
schema is fixed from its features (or its first window) and each later window is cast to it, or refused naming
the column, and its digest covers the first window (each shard is still keyed by its own tokens).
"""

import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pyarrow as pa
from datasets import Dataset, Features, IterableDataset

from ..engine.fingerprint import combine, json_digest, table_digest
from ..engine.rows import check_no_row_id, claim_result_columns
from ..provenance import read_provenance
from ..schemas import ColumnMap


WINDOW_ROWS = 16384  # rows prepared (and length-sorted) together


def check_max_rows(max_rows) -> None:
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"score(): `max_rows` must be a whole number >= 1 or None (every row), got {max_rows!r}.")


class RowSource:
    """The rows one `score()` call reads, a window at a time, less an earlier scoring's result columns."""

    def __init__(
        self,
        rows: Dataset | IterableDataset,
        column: str,
        max_rows: int | None = None,
        mapping: ColumnMap | None = None,
    ):
        if not isinstance(rows, (Dataset, IterableDataset)):
            raise TypeError(f"score() needs a datasets.Dataset or IterableDataset, got {type(rows).__name__}.")
        check_max_rows(max_rows)
        self.column, self.max_rows, self.mapping = column, max_rows, mapping
        self._mapped: Dataset | None = None
        self.sized = isinstance(rows, Dataset)
        self.user_format = rows.format if self.sized else None
        self.files = source_files(rows)
        if self.sized:
            plain = rows.with_format(None)
            plain = plain.select(range(min(max_rows, len(plain)))) if max_rows is not None else plain
            self.dataset = plain.remove_columns(self._earlier_columns(plain.column_names, plain))
            self._iter, self.features = None, self.dataset.features
        else:
            self.dataset = None
            self._iter = iter(rows if max_rows is None else rows.take(max_rows))
            self._first = list(islice(self._iter, WINDOW_ROWS))
            if not self._first:
                raise ValueError("score(): the stream has no rows: nothing to score.")
            self.features = self._stream_features(rows)

    def _earlier_columns(self, names: list[str], rows: Dataset | IterableDataset) -> list[str]:
        earlier = (read_provenance(rows).get("scoring") or {}).get("column")
        check_no_row_id(names)
        return claim_result_columns(names, self.column, earlier)

    def _stream_features(self, stream: IterableDataset) -> Features:
        window = Dataset.from_list(self._first, features=stream.features) if stream.features else None
        window = window if window is not None else Dataset.from_list(self._first)
        self._drop = self._earlier_columns(window.column_names, stream)
        features = Features({k: v for k, v in window.features.items() if k not in self._drop})
        unknown = [f.name for f in features.arrow_schema if pa.types.is_null(f.type)]
        if unknown and len(self._first) == WINDOW_ROWS and not stream.features:
            raise ValueError(
                f"score(): column {unknown[0]!r} is null in all of the stream's first {WINDOW_ROWS} rows, so its "
                "type is unknown for the rest of the stream (the scored parts must share one schema). Give the "
                f"stream its types (`stream.cast_column({unknown[0]!r}, datasets.Value('string'))`, or `features=` "
                "when loading it) or drop the column."
            )
        return features

    @property
    def total(self) -> int | None:
        return len(self.dataset) if self.sized else self.max_rows

    def digest(self) -> str:
        """What keys the scoring folder: every row of a `Dataset`, the first window of a stream; the mapping."""
        if self.sized:
            rows = table_digest(self.dataset.with_format("arrow").iter(batch_size=WINDOW_ROWS))
        else:
            rows = table_digest([self._window(self._first, 0).with_format("arrow")[:]])
        return combine(rows, json_digest(self.mapping and self.mapping.describe()))

    @property
    def trl_columns(self) -> list[str]:
        """The columns TRL's preparation sees (after the mapping)."""
        names = list(self.features)
        return self.mapping.columns_after(names) if self.mapping else names

    def mapped(self) -> Dataset:
        """A `Dataset`'s rows with TRL's columns (mapped once, in one Arrow pass)."""
        if self._mapped is None:
            self._mapped = self.mapping.apply(self.dataset) if self.mapping else self.dataset
        return self._mapped

    def windows(self) -> Iterator[tuple[int, Dataset, Dataset]]:
        """(offset, rows, rows with TRL's columns) for each window, in order, every window with the same features."""
        if self.sized:
            n, mapped = len(self.dataset), self.mapped()
            for start in range(0, n, WINDOW_ROWS):
                positions = range(start, min(n, start + WINDOW_ROWS))
                yield start, self.dataset.select(positions), mapped.select(positions)
            return
        offset, batch = 0, self._first
        while batch:
            rows = self._window(batch, offset)
            yield offset, rows, self.mapping.apply(rows, offset) if self.mapping else rows
            offset += len(batch)
            batch = list(islice(self._iter, WINDOW_ROWS))

    def _window(self, batch: list[dict], offset: int) -> Dataset:
        rows = [{k: v for k, v in row.items() if k not in self._drop} for row in batch]
        missing = sorted(set(self.features) - set(rows[0]))
        extra = sorted(set(rows[0]) - set(self.features))
        if missing or extra:
            raise ValueError(
                f"score(): the stream's rows from {offset} on have columns {sorted(rows[0])}, the first window's "
                f"were {sorted(self.features)}: every row of a stream needs the same columns."
            )
        try:
            return Dataset.from_list(rows, features=self.features)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError, ValueError) as err:
            raise ValueError(
                f"score(): rows {offset}..{offset + len(rows) - 1} of the stream do not fit the types of its first "
                f"rows ({self._which_column(rows)}); give the stream one schema (`stream.cast(features)`). ({err})"
            ) from None

    def _which_column(self, rows: list[dict]) -> str:
        for name, feature in self.features.items():
            try:
                Dataset.from_list([{name: r[name]} for r in rows], features=Features({name: feature}))
            except Exception:  # noqa: BLE001  (any failure to cast names this column)
                return f"column {name!r}, typed {feature}"
        return "a column"


def source_files(rows: Dataset | IterableDataset) -> list[Path]:
    """The files `rows` reads from (a `Dataset`'s Arrow cache files; a stream's data files when its builder says),
    resolved, so an output never overwrites its own input."""
    found = []
    if isinstance(rows, Dataset):
        found = [f["filename"] for f in rows.cache_files]
    else:
        iterable = getattr(rows, "_ex_iterable", None)
        for _ in range(32):  # wrappers (take, map, shuffle) keep the source one `ex_iterable` down
            if iterable is None:
                break
            kwargs = getattr(iterable, "kwargs", None) or {}
            for key in ("files", "filepaths", "data_files"):
                value = kwargs.get(key)
                found += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value]) if v]
            iterable = getattr(iterable, "ex_iterable", None)
    return [Path(os.path.realpath(str(f).split("::")[0])) for f in found if "://" not in str(f)]
