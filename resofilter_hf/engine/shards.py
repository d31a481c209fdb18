"""Scores on disk as they are made: Parquet shards of (row id, score columns), each with a completion marker.

A scoring folder holds one `<name>.parquet` per shard of work and, once that file is complete, `<name>.done`
(JSON: row count, file size, digest of the prepared tokens the rows were scored on, writer process, time). Both
are written to a temporary name in the same folder and renamed into place, the marker last, so a process killed
at any instant leaves either a complete shard or none: a shard without its marker is redone. A marked shard that
no longer matches its marker (another size, unreadable bytes, other columns, other row ids) is refused with an
error naming the file, because it was changed after it was written; a marker made from other prepared tokens is
stale and its shard is redone.
"""

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .files import atomic_path


ID = "id"
STATUS = "status"
FLOAT_COLUMNS = ("score", "loss")
ANATOMY_COLUMNS = ("toward_zero", "below_eps", "grad_norm")


class ShardError(ValueError):
    """A shard or marker in a scoring folder is not what this library wrote there."""


def shard_schema(anatomy: bool, alignment: bool = False) -> pa.Schema:
    floats = [*FLOAT_COLUMNS, *(ANATOMY_COLUMNS if anatomy else ()), *(("alignment",) if alignment else ())]
    fields = [pa.field(ID, pa.int64()), *(pa.field(c, pa.float64()) for c in floats)]
    return pa.schema([*fields, pa.field("tokens", pa.int64()), pa.field(STATUS, pa.string())])


def _atomic_write(path: Path, write) -> None:
    with atomic_path(path) as partial:
        write(partial)


class ShardStore:
    """The shards of one scoring folder (one folder per fingerprint of model, data and settings)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        anatomy: bool = False,
        schema: pa.Schema | None = None,
        alignment: bool = False,
    ):
        self.folder = Path(folder)
        self.schema = schema if schema is not None else shard_schema(anatomy, alignment)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.parquet"

    def marker(self, name: str) -> Path:
        return self.folder / f"{name}.done"

    def read_marker(self, name: str) -> dict | None:
        path = self.marker(name)
        if not path.is_file():
            return None
        try:
            marker = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ShardError(f"{path}: not a shard marker ({err}); delete it and {self.path(name).name}.") from None
        if not isinstance(marker, dict) or not {"rows", "bytes", "tokens"} <= marker.keys():
            raise ShardError(f"{path}: not a shard marker (expected rows, bytes, tokens); delete it.")
        return marker

    def is_done(self, name: str, tokens: str, ids: np.ndarray) -> bool:
        """True when `name` is complete, made from these prepared tokens, and holds exactly rows `ids`."""
        marker = self.read_marker(name)
        if marker is None or marker["tokens"] != tokens:
            return False  # never finished, or made from other tokens: redo it
        path = self.path(name)
        hint = f"delete it and {self.marker(name).name} to rescore its rows"
        if not path.is_file() or path.stat().st_size != marker["bytes"]:
            raise ShardError(f"{path}: missing or changed after it was completed; {hint}.")
        try:
            schema = pq.read_schema(path)
            found = pq.read_table(path, columns=[ID])[ID].to_numpy()
        except (pa.ArrowException, OSError) as err:
            raise ShardError(f"{path}: not a readable scoring shard ({err}); {hint}.") from None
        if not schema.remove_metadata().equals(self.schema):
            raise ShardError(f"{path}: columns {schema.names}, expected {self.schema.names}; {hint}.")
        if len(found) != len(ids) or not np.array_equal(found, ids):
            bad = sorted(set(found.tolist()) ^ set(np.asarray(ids).tolist()))[:5]
            raise ShardError(f"{path}: holds other row ids than its shard of work (e.g. {bad}); {hint}.")
        return True

    def write(self, name: str, columns: dict[str, np.ndarray | list], tokens: str, process: int) -> None:
        """The shard, then its marker, each renamed into place when complete."""
        self.folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pydict({f.name: columns[f.name] for f in self.schema}, schema=self.schema)
        path = self.path(name)
        _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        marker = {
            "rows": table.num_rows,
            "bytes": path.stat().st_size,
            "tokens": tokens,
            "process": process,
            "written_at": time.time(),
        }
        _atomic_write(self.marker(name), lambda tmp: tmp.write_text(json.dumps(marker)))

    def read(self, names: list[str]) -> pa.Table:
        """The rows of finished shards `names`, in that order (one Arrow table, nothing converted to Python)."""
        tables = [pq.read_table(self.path(name), schema=self.schema) for name in names]
        return pa.concat_tables(tables) if tables else self.schema.empty_table()

    def markers(self, prefix: str = "") -> dict[str, dict]:
        """{name: marker} of every finished shard whose name starts with `prefix`."""
        out = {}
        for path in sorted(self.folder.glob(f"{prefix}*.done")):
            try:
                out[path.stem] = json.loads(path.read_bytes())
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                continue  # read_marker names it when the shard is needed
        return out


def write_arrow(table: pa.Table, path: Path) -> None:
    """`table` as an Arrow IPC stream file (what `datasets.Dataset.from_file` memory-maps), renamed into place."""

    def write(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=65536)

    _atomic_write(path, write)
