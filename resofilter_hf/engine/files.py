"""Writing files that other processes (and threads) may be writing or reading at the same moment.

Every file goes to a temporary name in its own folder and is renamed into place when complete, so a reader never
sees half a file and a failed write (a full disk, a kill) leaves the earlier file intact. A temporary name is unique
per writer: host, process, thread and a random part, so two processes or two threads writing the same path never
share one. A writer's leftovers (it was killed mid-write) are removed only once that writer is gone, and a folder
is claimed by one job at a time through an exclusive lock file that names its holder.
"""

import contextlib
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path


try:  # POSIX: the kernel's advisory locks
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None


HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"  # this host, as writer names spell it
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-(?P<thread>\d+)\.[0-9a-f]+\.partial$")


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside `path`, unique to this host, process, thread and call."""
    tag = f"{HOST}-{os.getpid()}-{threading.get_ident()}"
    return path.with_name(f".{path.name}.{tag}.{secrets.token_hex(4)}.partial")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write to; renamed onto `path` only if the block completes.

    On any error (a full disk, an interrupt) the temporary file is removed and whatever `path` held before is left
    as it was, so a reader never sees a half-written file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder, not a file.")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_path(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` (text as UTF-8) to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as partial:
        partial.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def writer_of(name: str) -> tuple[str, int] | None:
    """(host, pid) of the writer that named a temporary file or folder `name` (`temporary_path`'s scheme), or None
    for a name of another scheme."""
    found = _PARTIAL.match(name)
    return (found["host"], int(found["pid"])) if found else None


def process_alive(host: str, pid: int) -> bool:
    """Whether process `pid` on `host` may still run: only a process of this host can be known to be gone."""
    if host != HOST:
        return True
    if pid <= 0:  # never signal a process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in `folder` whose writer is gone (killed mid-write); returns them. Files of a
    writer that may still run, and names this scheme did not make, are left alone."""
    removed = []
    for path in Path(folder).glob(".*.partial"):
        writer = writer_of(path.name)
        if writer and not process_alive(*writer):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


class FolderBusyError(RuntimeError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """An exclusive claim on a folder through `folder/.lock`, which names its holder (host, pid, start).

    On POSIX the claim is the kernel's `flock` on that file: released when its holder exits or is killed, so a dead
    holder never blocks a run and two processes can never both take over a stale claim. A live holder's claim is an
    error naming the folder and the holder. Elsewhere the file is made with O_EXCL and a dead holder's (same host)
    is taken over. A read-only folder is not claimed: nothing can be written there, by us or another run.
    """

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike, purpose: str = "scoring"):
        self.path = Path(folder) / self.NAME
        self.purpose = purpose
        self._fd: int | None = None
        self.held = False

    def acquire(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._try_flock() if fcntl else self._try_exclusive():
                return self
        raise FolderBusyError(f"could not lock {self.path.parent}: other processes keep claiming it.")

    def _try_flock(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except PermissionError:
            return True  # read-only: nothing to guard
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self._busy(self._owner())
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino  # not a file its last holder just unlinked
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": HOST, "pid": os.getpid(), "since": time.time()}).encode())
        self._fd, self.held = fd, True
        return True

    def _try_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except PermissionError:
            return True
        except FileExistsError:
            owner = self._owner()
            if owner is not None and process_alive(owner["host"], owner["pid"]):
                self._busy(owner)
            with contextlib.suppress(FileNotFoundError):  # its holder is gone: take it over
                self.path.unlink()
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump({"host": HOST, "pid": os.getpid(), "since": time.time()}, handle)
        self.held = True
        return True

    def _busy(self, owner: dict | None) -> None:
        who = "another process"
        if owner is not None and owner["pid"] > 0:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
            who = f"process {owner['pid']} on {owner['host']} has been {self.purpose} there since {since}"
        raise FolderBusyError(
            f"{self.path.parent} is in use: {who}. Wait for it to finish, or use another `output_dir`."
        ) from None

    def _owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text())
            return {"host": str(owner["host"]), "pid": int(owner["pid"]), "since": float(owner.get("since", 0))}
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError):  # half-written by a killed holder: treat as gone
            return {"host": HOST, "pid": -1, "since": 0.0}

    def release(self) -> None:
        if not self.held:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # before the kernel lock goes, so a waiter re-checks the inode and retries
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.held = False

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_not_input(output: str | os.PathLike, inputs) -> None:
    """Refuse to write `output` over its own input: the same file, a folder holding an input file, or a path inside
    an input folder (paths resolved, through symlinks), since a failed or partial run would lose the input."""
    target = Path(os.path.realpath(Path(output).expanduser()))
    for source in inputs:
        source = Path(os.path.realpath(Path(source).expanduser()))
        if source == target or target in source.parents or source in target.parents:
            raise ValueError(f"the output {output} would overwrite the input {source}; write to another path.")
