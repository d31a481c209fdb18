"""How a scored or selected dataset was made, carried on the dataset itself.

Provenance rides in `Dataset.info.description` (one line, ``resofilter-hf: {json}``) because `DatasetInfo`
survives `filter`, `select`, `sort`, `map` and `add_column`, so a card written later still knows which model,
transform and selection rule produced the rows. The rest of the description is left as the user wrote it.
"""

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, load_from_disk


MARKER = "resofilter-hf: "
PARQUET_KEY = b"resofilter-hf"  # parquet schema-metadata key holding the provenance JSON


def read_provenance(dataset: Dataset) -> dict[str, Any]:
    """The provenance dict stored on `dataset` ({} when there is none)."""
    for line in reversed((dataset.info.description or "").splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    return {}


def with_provenance(dataset: Dataset, **sections: Any) -> Dataset:
    """A shallow copy of `dataset` whose provenance has `sections` merged in (top-level keys replaced)."""
    merged = {**read_provenance(dataset), **sections}
    text = json.dumps(merged, sort_keys=True, default=str)
    kept = [line for line in (dataset.info.description or "").splitlines() if not line.startswith(MARKER)]
    out = copy.copy(dataset)
    out._info = copy.deepcopy(dataset.info)
    out._info.description = "\n".join([*kept, MARKER + text])
    return out


def write_parquet(dataset: Dataset, path: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
    """`dataset` as one parquet file with its features (the ``huggingface`` schema metadata, as `datasets` writes
    it) and `provenance` (JSON under ``resofilter-hf``). Streams in batches; never pickles."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = dataset.features.arrow_schema
    metadata = dict(schema.metadata or {})
    if provenance:
        metadata[PARQUET_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
    schema = schema.with_metadata(metadata)
    with pq.ParquetWriter(path, schema) as writer:
        for batch in dataset.with_format("arrow").iter(batch_size=10_000):
            writer.write_table(batch)
    return path


def parquet_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance a parquet file written by `write_parquet` carries ({} when none)."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[PARQUET_KEY]) if PARQUET_KEY in metadata else {}


def load_scored(path: str | Path) -> Dataset | DatasetDict:
    """A scored dataset from a `save_to_disk` folder or a parquet/JSON Lines file, with its provenance (parquet
    files written by this library carry it; other files come back without)."""
    path = Path(path)
    if path.is_dir():
        return load_from_disk(str(path))
    if path.suffix == ".parquet":
        return with_provenance(Dataset.from_parquet(str(path)), **parquet_provenance(path))
    if path.suffix in (".jsonl", ".json"):
        return Dataset.from_json(str(path))
    raise ValueError(f"load_scored: {path} is not a save_to_disk folder, .parquet, .jsonl or .json file")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a score or a selection depends on (for cards and reproducibility)."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["resofilter-hf", "torch", "transformers", "trl", "peft", "datasets", "accelerate"]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
