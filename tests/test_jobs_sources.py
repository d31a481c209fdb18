"""`dataset_name` as a local file or folder: one loader (`load_scored`) for the jobs and `resofilter select`."""

import os
import shutil
from pathlib import Path

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


def test_toy_dataset_options_take_text_values():
    from resofilter_hf.toy import make_math_problems as reference

    rows = load_rows(DataArguments(dataset_name="toy:math?n=7&seed=2&flaw_rate=0.5&level=basic&style=messages"))
    assert rows.to_list() == reference(7, seed=2, flaw_rate=0.5, level="basic", style="messages").to_list()


def test_toy_models_are_built_once_per_spec(tmp_path):
    """Each `toy:` spec gets its own folder under output_dir (another seed is another model), built on first use."""
    from resofilter_hf.jobs import resolve_model

    first = Path(resolve_model("toy:llama?seed=1&num_layers=2", str(tmp_path)))
    assert first == tmp_path / "toy-llama-num_layers2-seed1" and (first / "config.json").is_file()
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("toy:llama?seed=1&num_layers=2", str(tmp_path)) == str(first)
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # not built again
    other = Path(resolve_model("toy:llama?seed=2&num_layers=2", str(tmp_path)))
    assert other != first and (other / "model.safetensors").read_bytes() != (first / "model.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, other.name]  # no temporary folder left


def test_unknown_toy_model_is_a_usage_error_before_any_build(tmp_path):
    from resofilter_hf.jobs import UsageError, resolve_model

    with pytest.raises(UsageError, match=r"unknown toy model 'lama'; choose from \[.*'llama', .*'llama-warm'\]"):
        resolve_model("toy:lama", str(tmp_path))
    with pytest.raises(UsageError, match=r"toy:llama-warm takes only seed=, got \['num_layers', 'seed'\]"):
        resolve_model("toy:llama-warm?seed=0&num_layers=2", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_a_stream_reads_what_load_rows_reads(tmp_path):
    """`--streaming` takes the local sources `load_rows` takes: a save_to_disk folder (its split) and a .csv
    file stream the same rows."""
    from resofilter_hf.jobs import load_stream

    rows = make_math_problems(6, seed=1)
    DatasetDict(train=rows, test=rows.select([4, 5])).save_to_disk(tmp_path / "folder")
    rows.to_csv(tmp_path / "rows.csv", index=False)
    for name, split in ((tmp_path / "folder", None), (tmp_path / "folder", "test"), (tmp_path / "rows.csv", None)):
        args = DataArguments(dataset_name=str(name))
        assert list(load_stream(args, split)) == load_rows(args, split).to_list(), (name, split)
    with pytest.raises(FileNotFoundError, match=f"`dataset_name` {tmp_path / 'gone.parquet'}: no such file"):
        load_stream(DataArguments(dataset_name=str(tmp_path / "gone.parquet")))


def test_unknown_toy_dataset_is_a_usage_error():
    from resofilter_hf.jobs import UsageError

    with pytest.raises(UsageError, match=r"`dataset_name` toy:maths\?n=4: unknown toy dataset 'maths'; the toy world"):
        load_rows(DataArguments(dataset_name="toy:maths?n=4"))


def test_toy_model_builds_use_names_of_their_own_and_keep_a_finished_build(tmp_path, monkeypatch):
    """Each build goes to a temporary folder unique to its host, process, thread and call; an unfinished folder in
    the way is replaced, a finished one (another process's, identical) is kept, and nothing else is left."""
    from resofilter_hf.jobs import recipes, resolve_model

    built = []

    def fake_build(arch, options, folder, theirs=None):
        built.append(folder.name)
        folder.mkdir()
        (folder / "config.json").write_text("ours")
        if theirs is not None:  # another process finishes first, while this one builds
            theirs.mkdir()
            (theirs / "config.json").write_text("theirs")

    monkeypatch.setattr(recipes, "_build_toy_model", fake_build)
    target = tmp_path / "toy-llama"
    for _ in range(2):
        assert resolve_model("toy:llama", str(tmp_path)) == str(target)
        shutil.rmtree(target)
    assert built[0] != built[1] and all(f"-{os.getpid()}-" in name for name in built)
    target.mkdir()
    (target / "half.bin").write_bytes(b"killed mid-build")  # unfinished: no config.json
    resolve_model("toy:llama", str(tmp_path))
    assert (
        sorted(p.name for p in target.iterdir()) == ["config.json"] and (target / "config.json").read_text() == "ours"
    )
    shutil.rmtree(target)
    monkeypatch.setattr(recipes, "_build_toy_model", lambda a, o, folder: fake_build(a, o, folder, theirs=target))
    resolve_model("toy:llama", str(tmp_path))
    assert (target / "config.json").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy-llama"]  # no temporary folder left
