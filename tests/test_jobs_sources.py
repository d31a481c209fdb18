"""`dataset_name` as a local file or folder: one loader (`load_scored`) for the jobs and `resofilter select`."""

import pytest
from datasets import DatasetDict

from resofilter_hf.jobs import DataArguments, load_rows
from resofilter_hf.provenance import read_provenance, with_provenance, write_parquet
from resofilter_hf.toy import make_math_problems


def test_parquet_jsonl_and_save_to_disk_folders(tmp_path):
    rows = with_provenance(make_math_problems(6, seed=1), scoring={"column": "resonance"})
    parquet = write_parquet(rows, tmp_path / "rows.parquet", read_provenance(rows))
    loaded = load_rows(DataArguments(dataset_name=str(parquet)))
    assert loaded.to_list() == rows.to_list() and read_provenance(loaded) == {"scoring": {"column": "resonance"}}
    rows.to_json(tmp_path / "rows.jsonl")
    assert load_rows(DataArguments(dataset_name=str(tmp_path / "rows.jsonl"), max_rows=4)).to_list() == (
        rows.select(range(4)).to_list()
    )
    DatasetDict(train=rows, test=rows.select([0, 1])).save_to_disk(tmp_path / "folder")
    assert len(load_rows(DataArguments(dataset_name=str(tmp_path / "folder")))) == 6
    assert len(load_rows(DataArguments(dataset_name=str(tmp_path / "folder")), split="test")) == 2


def test_an_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "rows.txt"
    bad.write_text("prompt,completion\n")
    with pytest.raises(ValueError, match=f"load_scored: {bad} is not a save_to_disk folder, .parquet, .jsonl"):
        load_rows(DataArguments(dataset_name=str(bad)))
    empty = tmp_path / "rows.csv"
    empty.write_text("prompt,completion\n")
    with pytest.raises(ValueError, match=f"load_scored: {empty} could not be read as csv"):
        load_rows(DataArguments(dataset_name=str(empty)))
