"""How a scored or selected dataset was made, carried on the dataset itself.

Provenance rides in `Dataset.info.description` (one line, ``resofilter-hf: {json}``) because `DatasetInfo`
survives `filter`, `select`, `sort`, `map` and `add_column`, so a card written later still knows which model,
transform and selection rule produced the rows. The rest of the description is left as the user wrote it.
"""

import copy
import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, load_from_disk

from .columns import describe, named_score_column
from .engine.files import atomic_path
from .engine.rows import SCORES_ROW


MARKER = "resofilter-hf: "
PARQUET_KEY = b"resofilter-hf"  # parquet schema-metadata key holding the provenance JSON
SCORES_FILE = "resonance_scores.parquet"  # the scores beside a saved model or checkpoint
PARTS_MANIFEST = ".resofilter-parts.json"  # names a stream's scored parts (hidden: `load_dataset(folder)` skips it)
PARTS_DIR = "scored"  # a stream's scored parts, by default: <output_dir>/scored/

CITATION = """@inproceedings{tu-etal-2025-resofilter,
  title = {{ResoFilter}: Fine-grained Synthetic Data Filtering for Large Language Models through Data-Parameter Resonance Analysis},
  author = {Tu, Zeao and Meng, Xiangdi and He, Yu and Yao, Zihan and Qi, Tianyu and Liu, Jun and Li, Ming},
  booktitle = {Findings of the Association for Computational Linguistics: NAACL 2025},
  year = {2025},
  pages = {5414--5428},
  address = {Albuquerque, New Mexico},
  publisher = {Association for Computational Linguistics},
  url = {https://aclanthology.org/2025.findings-naacl.299/},
  eprint = {2412.14809},
  archivePrefix = {arXiv}
}"""

# The scoring provenance: (key, label) in the order cards show them. `pipeline.setup.scoring_provenance` writes the
# model, tensors and transform (`engine.targets.scored_tensors` the target keys), the run adds the row counts,
# `loss_on_prompt` and `columns_read_as` ({TRL's name: the file's column}); cards read them back by this list.
SCORING_FIELDS = (
    ("model_id", "base model"),
    ("model_revision", "model revision"),
    ("model_file", "model file"),
    ("target", "target"),
    ("modules", "modules"),
    ("modules_source", "modules chosen by"),
    ("last_n_layers", "last n layers"),
    ("layers", "layers"),
    ("target_names", "target weights"),
    ("target_tensors", "scored tensors"),
    ("lora_delta", "LoRA delta"),
    ("optimizer", "optimizer transform"),
    ("lr", "learning rate"),
    ("eps", "eps"),
    ("weight_decay", "weight decay"),
    ("betas", "betas"),
    ("metric", "metric"),
    ("dtype", "dtype"),
    ("chat_template_sha256", "chat template sha256"),
    ("max_length", "max length (tokens)"),
    ("columns_read_as", "columns read as"),
    ("completion_only_loss", "completion-only loss"),
    ("assistant_only_loss", "assistant-only loss"),
    ("loss_on_prompt", "loss on the prompt's tokens too"),
    ("column", "score column"),
    ("reference", "alignment reference set"),
    ("n_rows", "rows"),
    ("n_scored", "scored rows"),
    ("n_unscored", "unscored rows"),
    ("n_truncated", "rows cut at max length"),
    ("carried_over", "columns from an earlier run"),
    ("versions", "library versions"),
)


def read_provenance(dataset: Dataset) -> dict[str, Any]:
    """The provenance dict stored on `dataset` ({} when there is none). A provenance line that is not a JSON
    object is a ValueError saying so."""
    for line in reversed((dataset.info.description or "").splitlines()):
        if line.startswith(MARKER):
            return _provenance_object(line[len(MARKER) :], "the dataset's info.description")
    return {}


def _provenance_object(text: str | bytes, where: str) -> dict[str, Any]:
    """`text` parsed as the provenance JSON object, or a ValueError naming `where` it was read from."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ValueError(f"the resofilter-hf provenance in {where} is not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"the resofilter-hf provenance in {where} is a JSON {type(value).__name__}, not an object")
    return value


def with_provenance(dataset: Dataset, *, replace_all: bool = False, **sections: Any) -> Dataset:
    """A shallow copy of `dataset` whose provenance has `sections` merged in (top-level keys replaced), or with
    `replace_all`, is `sections` alone: a scoring run's output, whose input's earlier sections (a `selection`,
    `baselines`, another `scoring`) describe other rows or another model, and whose selection rule would
    otherwise be applied to the new scores."""
    merged = {**({} if replace_all else read_provenance(dataset)), **sections}
    text = json.dumps(merged, sort_keys=True, default=str)
    kept = [line for line in (dataset.info.description or "").splitlines() if not line.startswith(MARKER)]
    out = copy.copy(dataset)
    out._info = copy.deepcopy(dataset.info)
    out._info.description = "\n".join([*kept, MARKER + text])
    return out


def run_scoring(scoring: Mapping[str, Any], column_names, written) -> dict[str, Any]:
    """A run's `scoring` section, naming (``carried_over``) the input's columns an earlier run wrote that this one
    did not (`written`): they are kept as data, but no longer match the provenance."""
    column, written = scoring.get("column") or "resonance", set(written)
    carried = [c for c in column_names if c not in written and describe(c, column) is not None]
    return {**scoring, **({"carried_over": carried} if carried else {})}


def write_parquet(dataset: Dataset, path: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
    """`dataset` as one parquet file with its features (the ``huggingface`` schema metadata, as `datasets` writes
    it) and `provenance` (JSON under ``resofilter-hf``). Streams in batches; never pickles; atomic."""
    schema = dataset.features.arrow_schema
    metadata = dict(schema.metadata or {})
    if provenance:
        metadata[PARQUET_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
    schema = schema.with_metadata(metadata)
    with atomic_path(path) as partial, pq.ParquetWriter(partial, schema) as writer:
        for batch in dataset.with_format("arrow").iter(batch_size=10_000):
            writer.write_table(batch)
    return Path(path)


TABLE_SUFFIXES = (".parquet", ".jsonl", ".csv")  # what `write_table` writes, by the output path's suffix


def check_table_suffix(path: str | Path) -> str:
    """The suffix of an output table path, or a ValueError listing the accepted ones (or saying the path is a
    folder), checked before any compute."""
    if Path(path).is_dir():
        raise ValueError(
            f"cannot write {path}: it is a folder; give a file path such as {Path(path) / 'scored.parquet'}."
        )
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(
            f"cannot write {path}: the output format follows the suffix, one of {list(TABLE_SUFFIXES)}, "
            f"not {suffix or 'none'!r}."
        )
    return suffix


def write_table(dataset: Dataset, path: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
    """`dataset` to `path` in the format its suffix names: .parquet (with `provenance` in its metadata), .jsonl
    (one JSON object a row) or .csv. Atomic in every format; JSON Lines and CSV carry no provenance."""
    suffix = check_table_suffix(path)
    if suffix == ".parquet":
        return write_parquet(dataset, path, provenance)
    with atomic_path(path) as partial:
        if suffix == ".jsonl":
            _write_jsonl(dataset, partial)
        else:
            dataset.to_csv(str(partial), index=False)
    return Path(path)


def _write_jsonl(dataset: Dataset, path: Path) -> None:
    """One JSON object a row, floats written exactly (shortest repr), NaN/inf as null, Unicode as is."""
    with open(path, "w", encoding="utf-8") as f:
        for batch in dataset.iter(batch_size=1000):
            keys = list(batch)
            for values in zip(*batch.values()):
                row = dict(zip(keys, map(_json_value, values)))
                f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def written_columns(dataset: Dataset, column: str) -> list[str]:
    """The columns this library wrote (`columns.describe`): the score column, its variants (`<column>_epoch0`, ...),
    the companions and baselines, in dataset order."""
    return [c for c in dataset.column_names if describe(c, column) is not None]


def write_scores_file(scored: Dataset, folder: str | Path, column: str | None = None) -> Path:
    """`folder/resonance_scores.parquet`: `row` (the input row id) plus every score column of `scored`, with its
    provenance. The one writer of this file, for the trainer's checkpoints and the cards alike."""
    column = column or named_score_column(read_provenance(scored))
    keep = written_columns(scored, column)
    table = scored.select_columns(keep)
    table = table.add_column(SCORES_ROW, list(range(len(table)))).select_columns([SCORES_ROW, *keep])
    return write_parquet(table, Path(folder) / SCORES_FILE, read_provenance(scored))


def parquet_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance a parquet file written by `write_parquet` carries ({} when none); reads the footer only."""
    try:
        metadata = pq.read_schema(path).metadata or {}  # a truncated or corrupt file fails here
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path} is not a readable parquet file ({err})") from err
    if PARQUET_KEY not in metadata:
        return {}
    return _provenance_object(metadata[PARQUET_KEY], f"{path} (parquet metadata key {PARQUET_KEY.decode()!r})")


def parts_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a folder of scored parts (`score()` on a stream), or None when the folder has none."""
    path = Path(folder) / PARTS_MANIFEST
    if not path.is_file():
        return None
    manifest = _provenance_object(path.read_bytes(), str(path))
    if not isinstance(manifest.get("parts"), list):
        raise ValueError(f"{path}: not a parts manifest (no list of parts)")
    return manifest


def scored_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance of a scored file or parts folder, without reading its rows ({} when it carries none)."""
    path = Path(path)
    if path.is_dir():
        manifest = parts_manifest(path)
        return {"scoring": manifest.get("scoring") or {}} if manifest else {}
    return parquet_provenance(path) if path.suffix.lower() == ".parquet" else {}


def load_scored(path: str | Path) -> Dataset | DatasetDict:
    """A scored dataset from a folder of scored parts (a stream's), a `save_to_disk` folder, or a .parquet,
    .jsonl/.json or .csv file, with its provenance (parquet files and parts folders written by this library carry
    it; other files come back without). A missing or unreadable file is an error naming it."""
    path = Path(path)
    manifest = parts_manifest(path) if path.is_dir() else None
    if manifest is not None:  # a stream's scored parts: exactly the parts its manifest names, in order
        parts = [str(path / name) for name in manifest["parts"]]
        return with_provenance(Dataset.from_parquet(parts), scoring=manifest.get("scoring") or {})
    if path.is_dir():
        loaded = load_from_disk(str(path))
        for split in loaded.values() if isinstance(loaded, DatasetDict) else [loaded]:
            try:
                read_provenance(split)
            except ValueError as err:
                raise ValueError(f"load_scored: {path}: {err}") from err
        return loaded
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".jsonl", ".json", ".csv"):
        raise ValueError(f"load_scored: {path} is not a save_to_disk folder, .parquet, .jsonl, .json or .csv file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if suffix == ".parquet":
        provenance = parquet_provenance(path)  # a corrupt file is named here, before datasets reads its rows
        return with_provenance(Dataset.from_parquet(str(path)), **provenance)
    try:
        return Dataset.from_json(str(path)) if suffix in (".jsonl", ".json") else Dataset.from_csv(str(path))
    except Exception as err:  # datasets' reader errors name the builder, not the file
        raise ValueError(f"load_scored: {path} could not be read as {suffix[1:]} ({err})") from err


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: package metadata lookups cost tens of milliseconds."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["resofilter-hf", "torch", "transformers", "trl", "peft", "datasets", "accelerate"]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return tuple(found.items())


def library_versions() -> dict[str, str]:
    """Versions of the libraries a score or a selection depends on (for cards and reproducibility)."""
    return dict(_installed_versions())
