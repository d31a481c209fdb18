"""GSM8K from local jsonl files, as prompt/completion rows.

The files (``train.jsonl``, ``test.jsonl``; fields ``question`` and ``answer``) are looked for in, in order: the
`path` argument, the folder named by ``RESOFILTER_GSM8K_DIR``, and ``../shared/data/gsm8k`` beside the
repository root. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from datasets import Dataset

from ..evaluation import extract_final_answer


ENV_VAR = "RESOFILTER_GSM8K_DIR"
SPLITS = ("train", "test")
_REPO_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k"


def candidate_dirs(path: str | os.PathLike | None = None) -> list[Path]:
    """The folders `load_gsm8k` searches, in order."""
    dirs = [Path(path)] if path is not None else []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    dirs.append(_REPO_DEFAULT)
    return dirs


def find_gsm8k(split: str = "train", *, path: str | os.PathLike | None = None) -> Path:
    """The jsonl file of `split`; FileNotFoundError naming every place looked."""
    if split not in SPLITS:
        raise ValueError(f"unknown GSM8K split {split!r}; choose from {list(SPLITS)}")
    tried = []
    for folder in candidate_dirs(path):
        file = folder / f"{split}.jsonl"
        if file.is_file():
            return file
        tried.append(str(file))
    raise FileNotFoundError(
        f"GSM8K {split} split not found; looked for: {', '.join(tried)}. Pass path=..., or set {ENV_VAR} to the "
        "folder holding train.jsonl and test.jsonl."
    )


def load_gsm8k(split: str = "train", *, path: str | os.PathLike | None = None) -> Dataset:
    """GSM8K `split` with columns ``prompt`` (the question and a newline), ``completion`` (the worked solution),
    ``question``, ``answer`` (as in the file) and ``final_answer`` (the number after ``####``, normalised by
    `extract_final_answer`)."""
    file = find_gsm8k(split, path=path)
    rows: dict[str, list[str]] = {"prompt": [], "completion": [], "question": [], "answer": [], "final_answer": []}
    with open(file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                question, answer = record["question"], record["answer"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{file}:{line_no}: not a GSM8K row with 'question' and 'answer' ({err})") from err
            rows["prompt"].append(question + "\n")
            rows["completion"].append(answer)
            rows["question"].append(question)
            rows["answer"].append(answer)
            rows["final_answer"].append(extract_final_answer(answer))
    return Dataset.from_dict(rows)
