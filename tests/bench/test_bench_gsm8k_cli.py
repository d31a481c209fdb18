"""bench/_common.gsm8k_cli, the GSM8K benches' one command line: --out and --work-dir are honoured and made, and a
missing --gsm8k-dir is refused by name before any work."""

import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _common import gsm8k_cli  # noqa: E402


def test_out_and_work_dir_are_the_given_folders(tmp_path, monkeypatch):
    out, work = tmp_path / "out" / "deep", tmp_path / "work"
    argv = ["bench", "--gsm8k-dir", "somewhere", "--out", str(out), "--work-dir", str(work), "--smoke"]
    monkeypatch.setattr(sys, "argv", argv)
    args, got_work, got_out = gsm8k_cli("test", 1, tmp_path / "default", "resofilter-test-")
    assert (got_out, got_work) == (out, work) and out.is_dir() and work.is_dir()
    assert args.smoke and args.gsm8k_dir == "somewhere" and not (tmp_path / "default").exists()


def test_a_missing_gsm8k_dir_is_refused_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RESOFILTER_GSM8K_DIR", raising=False)
    monkeypatch.setattr(sys, "argv", ["bench", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        gsm8k_cli("test", 1, tmp_path / "default", "resofilter-test-")
    assert "give --gsm8k-dir or set RESOFILTER_GSM8K_DIR" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
