"""The GSM8K loader: search order, clear errors, and the real files when they are on disk."""

import json
import re

import pytest

from resofilter_hf.experiments import gsm8k
from resofilter_hf.experiments.gsm8k import ENV_VAR, find_gsm8k, load_gsm8k


def write_split(folder, rows, split="train"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


ROW = {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4 = <<3+4=7>>7\n#### 7"}


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """No env var and a repo default that does not exist, so only what a test sets up is found."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(gsm8k, "_REPO_DEFAULT", tmp_path / "absent")
    return tmp_path


def test_path_argument_and_columns(nowhere):
    folder = write_split(nowhere / "mine", [ROW, {**ROW, "answer": "no final line"}])
    ds = load_gsm8k(path=folder)
    assert ds.column_names == ["prompt", "completion", "question", "answer", "final_answer"]
    assert ds[0] == {
        "prompt": ROW["question"] + "\n",
        "completion": ROW["answer"],
        "question": ROW["question"],
        "answer": ROW["answer"],
        "final_answer": "7",
    }
    assert ds[1]["final_answer"] is None


def test_search_order(nowhere, monkeypatch):
    by_arg = write_split(nowhere / "arg", [ROW])
    by_env = write_split(nowhere / "env", [ROW, ROW])
    monkeypatch.setenv(ENV_VAR, str(by_env))
    assert find_gsm8k(path=by_arg) == by_arg / "train.jsonl"
    assert find_gsm8k(path=nowhere / "empty") == by_env / "train.jsonl"  # an argument without the file falls through
    assert len(load_gsm8k()) == 2
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr(gsm8k, "_REPO_DEFAULT", by_arg)
    assert len(load_gsm8k()) == 1


def test_missing_names_every_place_looked(nowhere, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(nowhere / "env"))
    with pytest.raises(FileNotFoundError) as err:
        load_gsm8k("test", path=nowhere / "arg")
    message = str(err.value)
    for place in ("arg", "env", "absent"):
        assert str(nowhere / place / "test.jsonl") in message
    assert ENV_VAR in message


def test_bad_rows_and_splits(nowhere):
    folder = nowhere / "bad"
    write_split(folder, [ROW])
    with open(folder / "train.jsonl", "a") as f:
        f.write('{"question": "no answer"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: not a GSM8K row"):
        load_gsm8k(path=folder)
    with pytest.raises(ValueError, match="unknown GSM8K split 'validation'"):
        load_gsm8k("validation", path=folder)


def _real_or_skip(split):
    try:
        return find_gsm8k(split)
    except FileNotFoundError as err:
        pytest.skip(f"GSM8K files not on this machine: {err}")


@pytest.mark.parametrize(("split", "n_rows"), [("train", 7473), ("test", 1319)])
def test_real_files(split, n_rows):
    _real_or_skip(split)
    ds = load_gsm8k(split)
    assert len(ds) == n_rows
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", a) for a in ds["final_answer"])
    assert all(p == q + "\n" for p, q in zip(ds["prompt"], ds["question"]))
    assert ds[0]["final_answer"] == ds[0]["answer"].split("#### ")[-1].replace(",", "")
