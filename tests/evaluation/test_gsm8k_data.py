"""The GSM8K loader: local files only from an explicit folder, the Hub otherwise, clear errors either way."""

import json
import re
from pathlib import Path

import pytest

from resofilter_hf.evaluation.gsm8k import ENV_VAR, HUB_ID, find_gsm8k, load_gsm8k
from resofilter_hf.jobs import DataArguments, load_rows


SAMPLE = Path(__file__).parents[1] / "data" / "gsm8k"  # 120 train and 40 test rows of the MIT-licensed files


def write_split(folder, rows, split="train"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


ROW = {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4 = <<3+4=7>>7\n#### 7"}


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """No RESOFILTER_GSM8K_DIR, so only what a test sets up is found."""
    monkeypatch.delenv(ENV_VAR, raising=False)
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


def test_path_argument_wins_over_the_environment(nowhere, monkeypatch):
    by_arg = write_split(nowhere / "arg", [ROW])
    by_env = write_split(nowhere / "env", [ROW, ROW])
    monkeypatch.setenv(ENV_VAR, str(by_env))
    assert find_gsm8k(path=by_arg) == by_arg / "train.jsonl"
    assert len(load_gsm8k(path=by_arg)) == 1
    assert len(load_gsm8k()) == 2  # no argument: the folder the variable names


def test_a_missing_local_split_names_the_file_and_its_source(nowhere, monkeypatch):
    with pytest.raises(FileNotFoundError) as err:
        load_gsm8k("test", path=nowhere / "arg")  # an explicit folder never falls through to anything else
    assert str(err.value) == f"GSM8K test split not found: no {nowhere / 'arg' / 'test.jsonl'} (folder from path=)"
    monkeypatch.setenv(ENV_VAR, str(nowhere / "env"))
    with pytest.raises(FileNotFoundError, match=rf"no {re.escape(str(nowhere / 'env'))}.*\(folder from \${ENV_VAR}\)"):
        load_gsm8k("train")
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(FileNotFoundError, match=f"no local GSM8K folder: pass path=... or set {ENV_VAR}"):
        find_gsm8k("train")


def test_bad_rows_and_splits(nowhere):
    folder = nowhere / "bad"
    write_split(folder, [ROW])
    with open(folder / "train.jsonl", "a") as f:
        f.write('{"question": "no answer"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: not a GSM8K row"):
        load_gsm8k(path=folder)
    with pytest.raises(ValueError, match="unknown GSM8K split 'validation'"):
        load_gsm8k("validation", path=folder)
    with pytest.raises(ValueError, match="unknown GSM8K split 'validation'"):
        load_gsm8k("validation")  # checked before any Hub call


def test_without_a_folder_it_asks_the_hub_and_names_the_variable_when_offline(nowhere):
    """The real `datasets.load_dataset` path, offline (conftest) with an empty cache: a clear error, not a search
    of the disk."""
    with pytest.raises(ConnectionError) as err:
        load_gsm8k("train", cache_dir=nowhere / "empty-cache")
    message = str(err.value)
    assert HUB_ID in message and "'main'" in message and ENV_VAR in message


def test_jobs_dataset_name_gsm8k_reads_the_named_folder(nowhere, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(SAMPLE))
    rows = load_rows(DataArguments(dataset_name="gsm8k", max_rows=10))
    assert len(rows) == 10 and rows["final_answer"][:3] == [
        a.rsplit("#### ", 1)[1].replace(",", "") for a in rows["answer"][:3]
    ]
    assert len(load_rows(DataArguments(dataset_name="gsm8k"), split="test")) == 40


@pytest.mark.parametrize(("split", "n_rows"), [("train", 7473), ("test", 1319)])
def test_real_files(gsm8k_dir, split, n_rows):
    ds = load_gsm8k(split, path=gsm8k_dir)
    assert len(ds) == n_rows
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", a) for a in ds["final_answer"])
    assert all(p == q + "\n" for p, q in zip(ds["prompt"], ds["question"]))
    assert ds[0]["final_answer"] == ds[0]["answer"].split("#### ")[-1].replace(",", "")
