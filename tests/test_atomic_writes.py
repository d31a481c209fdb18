"""Nothing lost on a failed write: every file goes to a temporary name in its folder and is renamed into place,
the format follows the suffix, and an output may not overwrite its input."""

import errno
import os

import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from resofilter_hf.engine.files import write_atomic
from resofilter_hf.jobs import run_select
from resofilter_hf.provenance import (
    load_scored,
    read_provenance,
    with_provenance,
    write_parquet,
    write_table,
)


def _scored(n=12, shift=0.0):
    ds = Dataset.from_dict(
        {
            "prompt": [f"q{i} \u00e9\u4e2d\U0001f600" for i in range(n)],
            "completion": [f"a{i}" for i in range(n)],
            "resonance": [1e-5 * (1 + (i * 7 % n) / 100) + shift for i in range(n)],
            "resonance_status": ["ok"] * n,
        }
    )
    return with_provenance(ds, scoring={"column": "resonance", "n_rows": n})


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_parquet_write_failing_mid_file_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "scored.parquet"
    old = _scored(12)
    write_parquet(old, path, read_provenance(old))
    before = path.read_bytes()
    calls = []

    def write_then_fail(self, table, *args, **kwargs):
        calls.append(len(table))
        if len(calls) == 2:
            _disk_full()
        return original(self, table, *args, **kwargs)

    original = pq.ParquetWriter.write_table
    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_then_fail)
    big = Dataset.from_dict({"x": list(range(25_000))})  # three batches of 10,000 rows: fails on the second
    with pytest.raises(OSError, match="No space left"):
        write_parquet(big, path)
    assert calls == [10_000, 10_000]
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    assert load_scored(path)["prompt"] == old["prompt"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_text_formats_failing_mid_write_leave_the_old_file_intact(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"kept{suffix}"
    write_table(_scored(5), path)
    before = path.read_bytes()
    if suffix == ".jsonl":  # the rows come in batches: the second one fails
        original = Dataset.iter

        def one_batch_then_fail(self, batch_size, *args, **kwargs):
            yield next(original(self, 2))
            _disk_full()

        monkeypatch.setattr(Dataset, "iter", one_batch_then_fail)
    else:

        def half_then_fail(self, target, *args, **kwargs):
            with open(target, "w") as f:
                f.write("half a row")
            _disk_full()

        monkeypatch.setattr(Dataset, "to_csv", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_table(_scored(9, shift=1.0), path)
    monkeypatch.undo()
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_atomic_text_write_failing_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "README.md"
    write_atomic(path, "old card")
    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(OSError):
        write_atomic(path, "new card")
    assert path.read_text() == "old card" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_the_format_follows_the_suffix(tmp_path, suffix):
    ds = _scored(6)
    path = write_table(ds, tmp_path / f"out{suffix}", read_provenance(ds))
    head = path.read_bytes()[:4]
    assert (head == b"PAR1") == (suffix == ".parquet")
    if suffix == ".jsonl":
        assert head.startswith(b'{"')
    if suffix == ".csv":
        assert path.read_text().splitlines()[0] == "prompt,completion,resonance,resonance_status"
    back = load_scored(path)
    assert back["prompt"] == ds["prompt"] and back["resonance"] == ds["resonance"]  # exact floats, Unicode


def test_select_writes_the_format_its_suffix_names_or_refuses(tmp_path):
    source = tmp_path / "scored.parquet"
    ds = _scored(12)
    write_parquet(ds, source, read_provenance(ds))
    path, counts = run_select(source, tmp_path / "keep.csv", keep=0.5, dedup_on=None)
    assert counts["n_kept"] == 6 and not path.read_bytes().startswith(b"PAR1")
    assert len(load_scored(path)) == 6
    with pytest.raises(ValueError, match=r"one of \['.parquet', '.jsonl', '.csv'\], not '.xlsx'"):
        run_select(source, tmp_path / "keep.xlsx", keep=0.5)
    assert not (tmp_path / "keep.xlsx").exists()


def test_select_refuses_to_overwrite_its_input(tmp_path):
    source = tmp_path / "scored.parquet"
    ds = _scored(12)
    write_parquet(ds, source, read_provenance(ds))
    before = source.read_bytes()
    for output in (source, tmp_path / "." / "scored.parquet"):
        with pytest.raises(ValueError, match=r"would overwrite the input"):
            run_select(source, output, keep=0.5)
    assert source.read_bytes() == before


def test_publish_staging_that_fails_keeps_the_earlier_staging(tmp_path, monkeypatch):
    from resofilter_hf.hub import publish

    folder = tmp_path / "repo"
    publish.publish_dataset(_scored(12), local_dir=folder)
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    monkeypatch.setattr(publish, "render_dataset_card", _disk_full)  # fails after the parquet files are written
    with pytest.raises(OSError, match="No space left"):
        publish.publish_dataset(_scored(12, shift=1.0), local_dir=folder, configs=[0.5])
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before and _leftovers(tmp_path) == []


def test_publish_refuses_an_unscored_dataset(tmp_path):
    from resofilter_hf.hub.publish import publish_dataset

    plain = Dataset.from_dict({"prompt": ["q"], "completion": ["a"]})
    with pytest.raises(ValueError, match=r"has no score column 'resonance'"):
        publish_dataset(plain, local_dir=tmp_path / "a")
    nan = with_provenance(plain.add_column("resonance", [float("nan")]), scoring={"column": "resonance"})
    with pytest.raises(ValueError, match=r"no row has a score in 'resonance' \(all 1 are NaN\)"):
        publish_dataset(nan, local_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
