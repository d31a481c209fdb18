"""Publish scored and selected datasets to the Hugging Face Hub, and put resonance cards beside checkpoints.

`publish_dataset` builds the whole repo in a local folder first -- one parquet file per config and split (shards
past ~500 MB), the card with its YAML ``configs:`` so ``load_dataset(repo_id, "keep50")`` works, the histogram
images -- and only then talks to the Hub: ``create_repo(exist_ok=True)``, a read of the existing README.md (so a
card a person edited is updated, not replaced), and one ``upload_folder`` commit. Network errors are retried with
exponential backoff; a failure that remains raises `PublishError` naming the staged folder, which is kept, so
nothing is lost. The token goes to the Hub client only: it is never printed, logged or written to a file.

Every parquet file carries its rows' provenance (JSON under the schema metadata key ``resofilter-hf``), so
`load_scored` gets it back from a downloaded file.
"""

import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import numpy as np
from datasets import Dataset, DatasetDict
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RevisionNotFoundError,
)

from ..columns import named_score_column, no_score_column
from ..engine.files import check_not_input, write_atomic
from ..provenance import library_versions, read_provenance, write_parquet
from ..selection import select_by_resonance
from . import staging
from .analysis import numbers
from .dataset_card import render_dataset_card
from .merge import merge_card


logger = logging.getLogger(__name__)

SHARD_BYTES = 500 * 1024**2
TRIES = 4  # attempts per Hub call; waits of BACKOFF_S, 2x, 4x ... between them
BACKOFF_S = 2.0
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_sleep = time.sleep  # module attribute so tests can record the backoff instead of waiting

T = TypeVar("T")


class PublishError(RuntimeError):
    """Publishing failed after the repo folder was staged; `folder` holds everything that was to be uploaded."""

    def __init__(self, message: str, folder: Path):
        super().__init__(message)
        self.folder = folder


@dataclass
class Published:
    """What `publish_dataset` did. `folder` is the staged repo (None when a temporary one was removed after a
    successful upload); `commit_url` is None when nothing was uploaded."""

    folder: Path | None
    repo_id: str | None
    configs: dict[str, dict[str, int]]  # config -> split -> rows
    commit_url: str | None = None


def publish_dataset(
    dataset_or_dict: Dataset | DatasetDict | Mapping[str, Dataset | DatasetDict],
    repo_id: str | None = None,
    *,
    configs: Sequence[float] | Mapping[str, float | Mapping[str, Any]] | None = None,
    private: bool = False,
    token: str | None = None,
    local_dir: str | Path | None = None,
    commit_message: str | None = None,
    push: bool = True,
    label_columns: Sequence[str] | None = None,
    api: HfApi | None = None,
) -> Published:
    """Stage a dataset repo (data, card, images) in a local folder, then upload it in one commit.

    Args:
        dataset_or_dict: a scored or selected `Dataset` (config "default", split "train"), a `DatasetDict`
            (config "default", its splits), or a dict config name -> `Dataset`/`DatasetDict`.
        repo_id: the Hub dataset repo. None stages only (then `local_dir` is required).
        configs: selections to add as configs, each `select_by_resonance` applied to every split of the
            "default" config (or of the only config): a list of keep shares (``[0.5, 0.25]`` adds "keep50" and
            "keep25"), or a dict name -> keep share or name -> `select_by_resonance` keyword arguments (without
            ``drop``, the column's declared direction: alignment drops its lowest).
        private: visibility of a repo this call creates; an existing repo's visibility is left as it is.
        token: Hub token; passed to the Hub client only.
        local_dir: where to stage: a new or empty folder, or one staged before. Staging writes README.md,
            ``data/`` and ``images/`` and replaces (or removes) only the files an earlier staging there wrote, as
            its record (``.resofilter-staged.json``) lists them; other files in the folder are left alone and are
            not uploaded, and a non-empty folder with no record is refused. Without `local_dir` a temporary
            folder is used and removed after a successful upload.
        commit_message: the commit's message (a default names the configs and this library's version).
        push: False stages only, with `repo_id` in the card's loading snippets.
        label_columns: columns to break scores down by in the card (default: ClassLabel/bool columns and
            columns named ``flaw`` or ``label``).
        api: the `HfApi` to use (default: a new one).

    Re-publishing to an existing repo keeps its README.md: only the sections between the card's
    ``resofilter-hf:begin/end`` markers and its ``configs:`` entries of the same names are replaced.
    Raises `PublishError` (with `.folder`, the staged repo) when the Hub still fails after retries.
    """
    all_configs = _as_configs(dataset_or_dict)
    _check_scored(all_configs)
    if isinstance(label_columns, str):
        label_columns = [label_columns]
    if local_dir is not None:  # rows read from files in the folder would be lost to the staging
        files = [f["filename"] for splits in all_configs.values() for ds in splits.values() for f in ds.cache_files]
        check_not_input(local_dir, files)
    all_configs.update(_derive_configs(all_configs, configs))
    upload = push and repo_id is not None
    if local_dir is None and not upload:
        raise ValueError("publish_dataset: staging only (repo_id=None or push=False) needs local_dir=")
    folder = Path(local_dir) if local_dir is not None else Path(tempfile.mkdtemp(prefix="resofilter-publish-"))
    created = not folder.exists()
    owned = staging.prepare(folder)
    try:
        with staging.stage(folder, owned) as work:  # built aside, then moved into place: a failure changes nothing
            data_files = stage_dataset(all_configs, work, repo_id=repo_id, label_columns=label_columns,
                                       load_path=os.path.abspath(folder))  # fmt: skip
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # made by this call and left empty by the failure: not left behind
        raise
    counts = {name: {split: len(ds) for split, ds in splits.items()} for name, splits in all_configs.items()}
    logger.info("Staged %s (configs: %s) in %s", repo_id or "dataset", ", ".join(all_configs), folder)
    if not upload:
        return Published(folder=folder, repo_id=repo_id, configs=counts)

    api = api or HfApi()
    message = commit_message or (
        f"Publish resonance-scored configs {', '.join(all_configs)} (resofilter-hf {library_versions().get('resofilter-hf', 'dev')})"
    )
    files = sorted(staging.recorded(folder) or ())
    info = _upload(api, folder, repo_id, data_files, files, private=private, token=token, message=message)
    if local_dir is None:
        shutil.rmtree(folder, ignore_errors=True)
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("Published %s: %s", repo_id, url)
    return Published(folder=folder if local_dir is not None else None, repo_id=repo_id, configs=counts, commit_url=url)


def _upload(
    api: HfApi, folder: Path, repo_id: str, data_files, files: list[str], *, private: bool, token: str | None,
    message: str,
):  # fmt: skip
    """Create the repo if needed, merge the staged card into its README.md, and upload the staged `files` of
    `folder` in one commit (removing stale shards of the configs staged). Any failure left after retries is a
    `PublishError`."""
    try:
        _retry(
            f"create_repo({repo_id})",
            lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token),
        )
        old_card = _retry(f"reading {repo_id}/README.md", lambda: _existing_readme(api, repo_id, token))
        if old_card is not None:
            readme = folder / "README.md"
            write_atomic(readme, merge_card(old_card, readme.read_text(encoding="utf-8")))
        return _retry(
            f"upload_folder({repo_id})",
            lambda: api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type="dataset",
                commit_message=message,
                token=token,
                allow_patterns=[_literal(f) for f in files],  # what staging wrote, never a file of the user's
                delete_patterns=[f"data/{name}/*" for name in data_files],  # stale shards of these configs
            ),
        )
    except Exception as err:
        detail = _scrub(f"{type(err).__name__}: {err}", token)
        raise PublishError(
            f"publishing dataset {repo_id} failed ({detail}). Nothing is lost: the staged repo is in {folder}; "
            f"upload it later with `hf upload {repo_id} {folder} --repo-type dataset --exclude '.resofilter-*'`",
            folder,
        ) from err


def stage_dataset(
    configs: Mapping[str, DatasetDict],
    folder: str | Path,
    *,
    repo_id: str | None = None,
    label_columns: Sequence[str] | None = None,
    load_path: str | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Write `configs` as a dataset repo in `folder`: ``data/<config>/<split>-0000i-of-0000n.parquet``, README.md
    (the card, whose YAML lists those files per config and split, and whose snippets load `repo_id`, else
    `load_path`, else `folder`) and ``images/``. Returns config -> split -> file paths relative to `folder`."""
    folder = Path(folder)
    data_files: dict[str, dict[str, list[str]]] = {}
    for name, splits in configs.items():
        data_files[name] = {}
        for split, ds in splits.items():
            n_shards = max(1, math.ceil(_nbytes(ds) / SHARD_BYTES))
            paths = []
            for i in range(n_shards):
                path = f"data/{name}/{split}-{i:05d}-of-{n_shards:05d}.parquet"
                shard = ds.shard(n_shards, i, contiguous=True) if n_shards > 1 else ds
                write_parquet(shard, folder / path, provenance=read_provenance(ds))
                paths.append(path)
            data_files[name][split] = paths
    card = render_dataset_card(configs, data_files, repo_id=repo_id, folder=folder, label_columns=label_columns,
                               load_path=load_path)  # fmt: skip
    write_atomic(folder / "README.md", str(card))
    return data_files


# --------------------------------------------------------------------------------------------------------- helpers


def _as_configs(dataset_or_dict) -> dict[str, DatasetDict]:
    """config name -> DatasetDict; a bare Dataset is split "train" of config "default"."""

    def splits(value, name) -> DatasetDict:
        if isinstance(value, DatasetDict):
            features = {split: ds.features for split, ds in value.items()}
            first = next(iter(value), None)
            for split, feats in features.items():
                if feats != features[first]:
                    differ = sorted(c for c in {*feats, *features[first]} if feats.get(c) != features[first].get(c))
                    raise ValueError(
                        f"publish_dataset: splits {first!r} and {split!r} of config {name!r} differ in columns "
                        f"{differ}; the splits of one config must share their features (cast them, or publish "
                        "them as separate configs)"
                    )
            if first is None:
                raise ValueError(f"publish_dataset: config {name!r} has no splits")
            return value
        if isinstance(value, Dataset):
            return DatasetDict({"train": value})
        raise TypeError(
            f"publish_dataset: config {name!r} is a {type(value).__name__}; expected a Dataset or DatasetDict "
            "(an IterableDataset must be materialised first)"
        )

    if isinstance(dataset_or_dict, (Dataset, DatasetDict)):
        return {"default": splits(dataset_or_dict, "default")}
    if isinstance(dataset_or_dict, Mapping):
        if not dataset_or_dict:
            raise ValueError("publish_dataset: no configs to publish (empty dict)")
        out = {}
        for name, value in dataset_or_dict.items():
            _check_config_name(name)
            out[name] = splits(value, name)
        return out
    return {"default": splits(dataset_or_dict, "default")}


def _check_config_name(name: str) -> None:
    if not isinstance(name, str) or not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise ValueError(f"publish_dataset: config name {name!r} must be letters, digits, '-', '_' or '.'")


def _derive_configs(configs: Mapping[str, DatasetDict], spec) -> dict[str, DatasetDict]:
    """The configs `spec` asks for, each `select_by_resonance` applied to every split of the base config."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        rules = {name: dict(rule) if isinstance(rule, Mapping) else {"keep": rule} for name, rule in spec.items()}
    else:
        rules = {f"keep{float(share) * 100:g}".replace(".", "_"): {"keep": share} for share in spec}
    if "default" in configs:
        base = "default"
    elif len(configs) == 1:
        base = next(iter(configs))
    else:
        raise ValueError(
            f"publish_dataset: configs= derives selections from the 'default' config, and there is none among "
            f"{list(configs)}; name the scored dataset 'default'"
        )
    out = {}
    for name, rule in rules.items():
        _check_config_name(name)
        if name in configs:
            raise ValueError(f"publish_dataset: config {name!r} is given and also asked for in configs=")
        out[name] = DatasetDict({split: select_by_resonance(ds, **rule) for split, ds in configs[base].items()})
    return out


def _check_scored(configs: Mapping[str, DatasetDict]) -> None:
    """Refuse to publish rows that carry no score: the card would describe a scoring that never happened."""
    for name, splits in configs.items():
        for split, ds in splits.items():
            column = named_score_column(read_provenance(ds))
            if column not in ds.column_names:
                raise no_score_column(f"publish_dataset: config {name!r} split {split!r}", column, ds.column_names)
            if len(ds) and not np.isfinite(numbers(ds, column)).any():
                raise ValueError(
                    f"publish_dataset: config {name!r} split {split!r}: no row has a score in {column!r} (all "
                    f"{len(ds)} are NaN); see the `resonance_status` column for why"
                )


def _literal(path: str) -> str:
    """An upload pattern (fnmatch) that matches exactly `path`."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _nbytes(ds: Dataset) -> float:
    table = ds.data
    return table.nbytes * len(ds) / max(1, table.num_rows)


def _existing_readme(api: HfApi, repo_id: str, token: str | None) -> str | None:
    """The repo's current README.md, or None when it has none. Read into a fresh folder, never from the cache, so a
    network error cannot hand back a stale copy."""
    with tempfile.TemporaryDirectory(prefix="resofilter-card-") as tmp:
        try:
            path = api.hf_hub_download(repo_id, "README.md", repo_type="dataset", token=token, local_dir=tmp)
        except (RemoteEntryNotFoundError, RevisionNotFoundError):
            return None
        return Path(path).read_text(encoding="utf-8")


def _is_transient(err: BaseException) -> bool:
    """Worth retrying: a network failure, a timeout, rate limiting or a server error."""
    if isinstance(err, OfflineModeIsEnabled):
        return False
    if isinstance(err, HfHubHTTPError):
        return getattr(err.response, "status_code", None) in TRANSIENT_STATUS
    if isinstance(err, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return True
    if isinstance(err, LocalEntryNotFoundError) and err.__cause__ is not None:  # download hid a network error
        return _is_transient(err.__cause__)
    return False


def _retry(what: str, call: Callable[[], T], tries: int = TRIES, backoff_s: float = BACKOFF_S) -> T:
    """`call()`, retried on transient errors with waits of backoff_s, 2*backoff_s, 4*backoff_s ..."""
    for attempt in range(1, tries + 1):
        try:
            return call()
        except Exception as err:
            if attempt == tries or not _is_transient(err):
                raise
            wait = backoff_s * 2 ** (attempt - 1)
            logger.warning(
                "%s failed (%s); try %d of %d in %.0f s", what, type(err).__name__, attempt + 1, tries, wait
            )
            _sleep(wait)
    raise AssertionError("unreachable")


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "<token>") if token else text
