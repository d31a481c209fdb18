"""The folder `publish_dataset` stages a repo in: it holds the files staging wrote, and staging touches nothing else.

A record (`RECORD`, in the folder) lists the files staging wrote. A new staging builds every file in a hidden work
folder inside the staging folder (so a symlinked folder stays a link, and every move stays on one filesystem),
then moves them into place, removes the files of the previous record it no longer writes, and rewrites the
record. Files the record does not list (a user's notes, a ``.git``) are neither replaced, deleted nor uploaded.
Before the moves the record lists old and new files together, so a run killed at any point leaves a record that
names every file it may have written, and the next run finishes the job. A work folder is named like any temporary
file (`engine.files.temporary_path`: host, process, thread, random), and one is removed only once its writer is
known to be gone (`engine.files.process_alive`: a process of another host sharing the filesystem never is). A
folder staged by an earlier version (no record; a README with the staging marker and nothing but README.md,
``data/`` and ``images/``) is adopted, after rolling back that version's interrupted restaging (its
``.NAME.PID.old`` beside the folder), which replaces only a folder that carries the staging marker.
"""

import contextlib
import json
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..engine import files
from ..engine.files import process_alive, temporary_path, write_atomic


RECORD = ".resofilter-staged.json"  # {"files": [paths relative to the folder]}
WORK_NAME = "resofilter-staging"  # a work folder: `temporary_path(folder / WORK_NAME)`, one per run
WORK_PREFIX = f".{WORK_NAME}."  # what every work folder's name starts with
STAGED_MARK = "<!-- resofilter-hf:begin configs -->"  # in every README this library stages
LEGACY_TOP = ("README.md", "data", "images")  # what an earlier version staged, and nothing else


def prepare(folder: Path) -> set[str]:
    """Make `folder` ready for a staging and return the files earlier stagings wrote there (relative paths).

    Refuses, before anything is written, a folder that is a file, or that holds files and no record of an earlier
    staging (a folder of the user's: nothing in it is touched)."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"publish_dataset: local_dir {folder} is a file")
    _roll_back_legacy(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for work in folder.glob(f"{WORK_PREFIX}*"):
        if work.is_dir() and _writer_gone(work.name):
            shutil.rmtree(work, ignore_errors=True)  # left by a killed run
    owned = recorded(folder)
    if owned is None:
        owned = _legacy_files(folder)
    if owned is None:
        if any(p.name != RECORD and not p.name.startswith(WORK_PREFIX) for p in folder.iterdir()):
            raise FileExistsError(
                f"publish_dataset: local_dir {folder} is not empty and holds no record of a resofilter-hf staging "
                f"({RECORD}); nothing in it was touched. Give a new or empty folder"
            )
        owned = set()
    return owned


def recorded(folder: Path) -> set[str] | None:
    """The files the record in `folder` lists, or None when there is no readable record."""
    try:
        files = json.loads((folder / RECORD).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {f for f in files if isinstance(f, str) and _inside(f)} if isinstance(files, list) else None


@contextlib.contextmanager
def stage(folder: Path, owned: set[str]) -> Iterator[Path]:
    """A fresh work folder to build the repo in; when the block completes, its files replace the staging in
    `folder` (`commit`). On any error the work folder is removed and `folder` is left as it was."""
    work = temporary_path(folder / WORK_NAME)
    work.mkdir()
    try:
        yield work
        commit(folder, work, owned)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def commit(folder: Path, work: Path, owned: set[str]) -> list[str]:
    """Move every file of `work` into `folder`, remove the files of `owned` not written again, and record the new
    files (returned, relative). A file in the way that staging did not write is an error, raised before any
    move."""
    new = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())
    theirs = [p for p in new if (folder / p).exists() and p not in owned]
    if theirs:
        raise FileExistsError(
            f"publish_dataset: {folder / theirs[0]} was not written by resofilter-hf; staging would replace it. "
            "Move it away, or give another folder"
        )
    _write_record(folder, owned | set(new))  # a kill from here on leaves a record of every file it may have written
    for path in new:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / path, folder / path)
    for path in sorted(owned - set(new)):
        (folder / path).unlink(missing_ok=True)
        _prune(folder, (folder / path).parent)
    _write_record(folder, set(new))
    return new


def _write_record(folder: Path, files: set[str]) -> None:
    write_atomic(folder / RECORD, json.dumps({"files": sorted(files)}, indent=1) + "\n")


def _prune(folder: Path, directory: Path) -> None:
    """Remove `directory` and its parents below `folder` while they are empty."""
    while directory != folder and folder in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _inside(path: str) -> bool:
    """A relative path that stays inside the folder (a record is read, not trusted)."""
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts


def _writer_gone(name: str) -> bool:
    """Whether the process that named a work folder `name` (`temporary_path`'s scheme) is known to be gone; a name
    of another scheme, or a process of another host, counts as running, so nothing of it is removed."""
    writer = files.writer_of(name)
    return bool(writer) and not process_alive(*writer)


def _legacy_writer_gone(aside: Path, place: Path) -> bool:
    """Whether the earlier version's process that moved a staging aside (``.NAME.PID.old``, named by pid alone) is
    gone: read as a process of this host, the only host that version staged from."""
    pid = aside.name[len(place.name) + 2 : -len(".old")]
    return pid.isdigit() and not process_alive(files.HOST, int(pid))


def _staged_before(folder: Path) -> bool:
    readme = folder / "README.md"
    return readme.is_file() and STAGED_MARK in readme.read_text(encoding="utf-8", errors="replace")


def _legacy_shaped(folder: Path) -> bool:
    """Only what an earlier version's staging writes: README.md, data/ and images/ files (and their partials)."""
    for path in folder.rglob("*"):
        top = path.relative_to(folder).parts[0]
        partial = path.name.startswith(".") and path.name.endswith(".partial")
        if path.is_file() and top not in LEGACY_TOP and not partial:
            return False
    return True


def _legacy_files(folder: Path) -> set[str] | None:
    """The files of a folder an earlier version staged (no record), or None when it is not one."""
    if not (_staged_before(folder) and _legacy_shaped(folder)):
        return None
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _roll_back_legacy(folder: Path) -> None:
    """An earlier version restaged by moving the old staging aside (``.NAME.PID.old``) and building anew in its
    place; killed in between, it left both. Put the old staging back. What is in its place is deleted only when it
    is a staging (the marker in its README); anything else there (a half-built staging with no README yet, or a
    folder of the user's of the same shape) is moved aside, beside it, with a warning naming where."""
    place = Path(os.path.abspath(folder))
    if not place.name or place.is_symlink():
        return
    for aside in place.parent.glob(f".{place.name}.*.old"):
        if not _legacy_writer_gone(aside, place) or not _staged_before(aside) or recorded(aside) is not None:
            continue
        if place.exists() and (recorded(place) is not None or not _legacy_shaped(place)):
            continue
        if _legacy_files(place) is not None:
            shutil.rmtree(place)  # the earlier version's own half-built staging
        elif place.exists():
            kept = place.with_name(f"{place.name}.moved-aside-{secrets.token_hex(3)}")
            place.rename(kept)
            warnings.warn(
                f"publish_dataset: moved {place} to {kept} to put back the staging an interrupted earlier run had "
                f"set aside ({aside.name}); nothing was deleted",
                stacklevel=4,
            )
        aside.rename(place)
        return
