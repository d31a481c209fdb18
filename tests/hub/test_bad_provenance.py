"""A scored file whose provenance is broken JSON, or JSON but not an object: `resofilter select` and `resofilter
report` fail in one line naming the file, and the Python readers name what they read."""

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from resofilter_hf.provenance import MARKER, PARQUET_KEY, load_scored, read_provenance


BAD = {"broken": b'{"scoring": {"column": ', "list": b'[{"scoring": {}}]', "string": b'"resonance"'}


def bad_file(folder, kind: str):
    table = pa.table({"prompt": ["a", "b", "c"], "completion": ["x", "y", "z"], "resonance": [1.0, 2.0, 3.0]})
    path = folder / f"{kind}.parquet"
    pq.write_table(table.replace_schema_metadata({PARQUET_KEY: BAD[kind]}), path)
    return path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "resofilter_hf.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("kind", ["broken", "list"])
def test_select_and_report_name_the_file(kind, tmp_path):
    path = bad_file(tmp_path, kind)
    what = "is not valid JSON" if kind == "broken" else "is a JSON list, not an object"
    expected = f"the resofilter-hf provenance in {path} (parquet metadata key 'resofilter-hf') {what}"
    for args in (["select", str(path), str(tmp_path / "out.parquet"), "--keep", "0.5"],
                 ["report", str(path), "--out", str(tmp_path / "r.html")]):  # fmt: skip
        done = run_cli(*args)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], done.stderr
        assert "Traceback" not in done.stderr


def test_python_readers_name_what_they_read(tmp_path):
    with pytest.raises(ValueError, match=r"string\.parquet \(parquet metadata key 'resofilter-hf'\) is a JSON str"):
        load_scored(bad_file(tmp_path, "string"))
    ds = Dataset.from_dict({"resonance": [1.0]})
    ds.info.description = f"notes\n{MARKER}{{broken"
    with pytest.raises(ValueError, match=r"provenance in the dataset's info.description is not valid JSON"):
        read_provenance(ds)
    ds.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=rf"load_scored: {tmp_path / 'saved'}: the resofilter-hf provenance"):
        load_scored(tmp_path / "saved")
