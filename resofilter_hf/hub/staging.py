"""The folder `publish_dataset` stages a repo in: it holds the files staging wrote, and staging touches nothing else.

A record (`RECORD`, in the folder) lists the files staging wrote. A new staging builds every file in a hidden work
folder inside the staging folder (so a symlinked folder stays a link, and every move stays on one filesystem),
then moves them into place, removes the files of the previous record it no longer writes, and rewrites the
record. Files the record does not list (a user's notes, a ``.git``) are neither replaced, deleted nor uploaded.
Before the moves the record lists old and new files together, so a run killed at any point leaves a record that
names every file it may have written, and the next run finishes the job; work folders of dead processes are
removed. A folder staged by an earlier version (no record; a README with the staging marker and nothing but
README.md, ``data/`` and ``images/``) is adopted, after rolling back that version's interrupted restaging (its
``.NAME.PID.old`` beside the folder).
"""

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..provenance import write_atomic


RECORD = ".resofilter-staged.json"  # {"files": [paths relative to the folder]}
WORK_PREFIX = ".resofilter-staging."  # + "<pid>.<random>": one work folder per run
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
        if work.is_dir() and not _alive(_pid(work.name[len(WORK_PREFIX) :])):
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
    work = folder / f"{WORK_PREFIX}{os.getpid()}.{secrets.token_hex(4)}"
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


def _pid(text: str) -> int | None:
    head = text.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int | None) -> bool:
    """Whether process `pid` runs (None, unknown: counted as running, so nothing of it is removed)."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    place; killed in between, it left both. Put the old staging back (the half-built one is its own work)."""
    place = Path(os.path.abspath(folder))
    if not place.name or place.is_symlink():
        return
    for aside in place.parent.glob(f".{place.name}.*.old"):
        pid = _pid(aside.name[len(place.name) + 2 :])
        if pid is None or _alive(pid) or not _staged_before(aside) or recorded(aside) is not None:
            continue
        if place.exists() and (recorded(place) is not None or not _legacy_shaped(place)):
            continue
        if place.exists():
            shutil.rmtree(place)
        aside.rename(place)
        return
