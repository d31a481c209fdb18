"""GSM8K as prompt/completion rows: from the Hub (``openai/gsm8k``, config ``main``) or from local jsonl files.

Without a path, `load_gsm8k` loads ``openai/gsm8k`` as `datasets.load_dataset` does, from its offline cache when
the Hub is unreachable and a copy is cached. Local files (``train.jsonl``, ``test.jsonl``; fields ``question`` and
``answer``, as in the GSM8K repository) are read only from a folder named explicitly: the `path` argument, else the
``RESOFILTER_GSM8K_DIR`` environment variable. Nothing else on disk is searched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from datasets import Dataset

from .gsm8k_accuracy.final_answer import extract_final_answer


ENV_VAR = "RESOFILTER_GSM8K_DIR"
HUB_ID = "openai/gsm8k"
HUB_CONFIG = "main"
SPLITS = ("train", "test")
COLUMNS = ("prompt", "completion", "question", "answer", "final_answer")


def local_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The folder of local GSM8K files: `path`, else the one ``RESOFILTER_GSM8K_DIR`` names, else None (the Hub)."""
    if path is not None:
        return Path(path)
    return Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None


def find_gsm8k(split: str = "train", *, path: str | os.PathLike | None = None) -> Path:
    """The local jsonl file of `split`; FileNotFoundError naming the file and where its folder came from."""
    _check_split(split)
    folder = local_dir(path)
    if folder is None:
        raise FileNotFoundError(
            f"no local GSM8K folder: pass path=... or set {ENV_VAR} to the folder holding train.jsonl and test.jsonl"
        )
    file = folder / f"{split}.jsonl"
    if not file.is_file():
        source = "path=" if path is not None else f"${ENV_VAR}"
        raise FileNotFoundError(f"GSM8K {split} split not found: no {file} (folder from {source})")
    return file


def load_gsm8k(
    split: str = "train", *, path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> Dataset:
    """GSM8K `split` with columns ``prompt`` (the question and a newline), ``completion`` (the worked solution),
    ``question``, ``answer`` (as given) and ``final_answer`` (the number after ``####``, normalised by
    `extract_final_answer`).

    With `path` or ``RESOFILTER_GSM8K_DIR`` set, the rows come from that folder's jsonl file; otherwise from
    ``openai/gsm8k`` on the Hub (`cache_dir` as in `datasets.load_dataset`). A ConnectionError that names
    ``RESOFILTER_GSM8K_DIR`` says when neither the Hub nor a cached copy can be reached.
    """
    _check_split(split)
    if local_dir(path) is not None:
        return _as_rows(_read_jsonl(find_gsm8k(split, path=path)))
    return _as_rows(_from_hub(split, cache_dir))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown GSM8K split {split!r}; choose from {list(SPLITS)}")


def _read_jsonl(file: Path) -> list[tuple[str, str]]:
    rows = []
    with open(file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                rows.append((record["question"], record["answer"]))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{file}:{line_no}: not a GSM8K row with 'question' and 'answer' ({err})") from err
    return rows


def _from_hub(split: str, cache_dir: str | os.PathLike | None) -> Iterable[tuple[str, str]]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(
            HUB_ID, HUB_CONFIG, split=split, cache_dir=None if cache_dir is None else str(cache_dir)
        )
    except ConnectionError as err:
        raise ConnectionError(
            f"GSM8K: {HUB_ID} (config {HUB_CONFIG!r}) is neither reachable on the Hub nor in the offline cache "
            f"({err}). For local files, set {ENV_VAR} to the folder holding train.jsonl and test.jsonl, or pass "
            "path=..."
        ) from err
    return zip(dataset["question"], dataset["answer"])


def _as_rows(pairs: Iterable[tuple[str, str]]) -> Dataset:
    rows: dict[str, list] = {name: [] for name in COLUMNS}
    for question, answer in pairs:
        rows["prompt"].append(question + "\n")
        rows["completion"].append(answer)
        rows["question"].append(question)
        rows["answer"].append(answer)
        rows["final_answer"].append(extract_final_answer(answer))
    return Dataset.from_dict(rows)
