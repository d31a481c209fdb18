"""Usage errors as a user meets them (subprocesses): exit code 2 for every usage error and 1 for a failure, a
misspelt flag answered with the closest valid one, and options and files checked before the heavy imports, so the
answer comes back in a second or two (the bound here is generous: the machine running the tests may be busy)."""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest


RECIPE = (
    "model_name_or_path: toy:llama\ndataset_name: toy:math?n=4\noutput_dir: {out}\nuse_cpu: true\nreport_to: none\n"
)
FAST = 5.0  # seconds: an argument or file error, answered before torch and TRL are imported


def _cases(tmp) -> dict[str, list[str]]:
    (tmp / "good.yaml").write_text(RECIPE.format(out=tmp / "o"))
    (tmp / "scored.parquet").write_bytes(b"not read: every case here fails before reading it")
    missing = str(tmp / "missing.parquet")
    select = ["select", str(tmp / "scored.parquet"), str(tmp / "out.parquet")]
    return {
        "keep_1.5": [*select, "--keep", "1.5"],
        "keep_0": [*select, "--keep", "0"],
        "keep_50": [*select, "--keep", "50"],
        "keep_abc": [*select, "--keep", "abc"],
        "keep_nan": [*select, "--keep", "nan"],
        "keep_before_file": ["select", missing, str(tmp / "out.parquet"), "--keep", "1.5"],
        "select_unknown_flag": [*select, "--keep", "0.5", "--dedup_on", "prompt"],
        "select_misspelt_required": [*select, "--kep", "0.5"],  # named, not "--keep is required"
        "select_abbreviated": [*select, "--kee", "1.5"],  # argparse's prefix of --keep: the value is checked
        "misspelt_command": ["selct", str(tmp / "scored.parquet")],
        "report_keep": ["report", str(tmp / "scored.parquet"), "--keep", "2"],
        "publish_keep": ["publish", str(tmp / "scored.parquet"), "--local-dir", str(tmp / "repo"), "--keep", "0"],
        "select_missing": ["select", missing, str(tmp / "out.parquet"), "--keep", "0.5"],
        "report_missing": ["report", missing],
        "publish_missing": ["publish", missing, "--local-dir", str(tmp / "repo")],
        "score_missing_config": ["score", "--config", str(tmp / "nope.yaml")],
        "score_misspelt_flag": ["score", "--config", str(tmp / "good.yaml"), "--resonance_optimzer", "sgd"],
        "score_negative_exponent": ["score", "--config", str(tmp / "good.yaml"), "--resonance_lr", "-1e-5"],
        "select_negative_exponent": [*select, "--threshold", "-1e-5", "--keep", "0.5"],  # the value was read
        "score_misspelt_config": ["score", "--confg", str(tmp / "good.yaml")],
        "report_empty_out": ["report", str(tmp / "scored.parquet"), "--out", ""],
        "score_zero_rows": ["score", "--config", str(tmp / "good.yaml"), "--max_rows", "0"],
        "score_stray_value": ["score", "--config", str(tmp / "good.yaml"), "stray"],
        "score_no_dataset": ["score", "--output_dir", str(tmp / "o2")],
        "train_nothing": ["train"],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case run once, two at a time, each timed from start to exit."""
    tmp = tmp_path_factory.mktemp("cli-usage")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    def run(argv):
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "resofilter_hf.cli", *argv]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=300)
        return done, time.perf_counter() - started

    cases = _cases(tmp)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return tmp, dict(zip(cases, pool.map(run, cases.values())))


KEEP = "error: argument --keep: must be a share with 0 < keep <= 1 (0.5 keeps half), got '{}'"


@pytest.mark.parametrize(
    "case, code, message, fast",
    [
        ("keep_1.5", 2, "resofilter select: " + KEEP.format("1.5"), True),
        ("keep_0", 2, "resofilter select: " + KEEP.format("0"), True),
        ("keep_50", 2, "resofilter select: " + KEEP.format("50"), True),
        ("keep_abc", 2, "resofilter select: " + KEEP.format("abc"), True),
        ("keep_nan", 2, "resofilter select: " + KEEP.format("nan"), True),
        ("keep_before_file", 2, "resofilter select: " + KEEP.format("1.5"), True),
        ("report_keep", 2, "resofilter report: " + KEEP.format("2"), True),
        ("publish_keep", 2, "resofilter publish: " + KEEP.format("0"), True),
        (
            "select_unknown_flag",
            2,
            "resofilter select: error: unrecognized argument --dedup_on; did you mean --dedup-on?",
            True,
        ),
        (
            "select_misspelt_required",
            2,
            "resofilter select: error: unrecognized argument --kep; did you mean --keep?",
            True,
        ),
        ("select_abbreviated", 2, "resofilter select: " + KEEP.format("1.5"), True),
        (
            "misspelt_command",
            2,
            "resofilter: error: unknown command 'selct'; did you mean 'select'? Commands: demo, score, select, report, "
            "train, publish",
            True,
        ),
        ("select_missing", 1, "resofilter select: {tmp}/missing.parquet: no such file or folder", True),
        ("report_missing", 1, "resofilter report: {tmp}/missing.parquet: no such file or folder", True),
        ("publish_missing", 1, "resofilter publish: {tmp}/missing.parquet: no such file or folder", True),
        ("score_missing_config", 2, "resofilter score: error: --config {tmp}/nope.yaml: no such file", True),
        (
            "train_nothing",
            2,
            "resofilter train: error: give --config RECIPE.yaml, or the fields as flags; --help lists them",
            True,
        ),
        (
            "score_misspelt_flag",
            2,
            "resofilter score: error: unrecognized argument --resonance_optimzer; did you mean --resonance_optimizer?",
            False,
        ),
        (  # read as the value it is, then checked (argparse alone takes -1e-5 for an option)
            "score_negative_exponent",
            2,
            "resofilter score: error: `resonance_lr` must be between 1e-12 and 100, got -1e-05.",
            False,
        ),
        (
            "select_negative_exponent",
            2,
            "resofilter select: error: argument --keep: not allowed with argument --threshold",
            True,
        ),
        (
            "score_misspelt_config",
            2,
            "resofilter score: error: unrecognized argument --confg; did you mean --config?",
            False,
        ),
        (
            "report_empty_out",
            2,
            "resofilter report: error: report: out is empty; give a file path such as report.html",
            True,
        ),
        (
            "score_zero_rows",
            2,
            "resofilter score: error: `max_rows` must be at least 1 (or left out for every row), got 0.",
            False,
        ),
        ("score_stray_value", 2, "resofilter score: error: unrecognized arguments: stray", False),
        (
            "score_no_dataset",
            2,
            "resofilter score: error: `dataset_name` is required: a Hub id, a local file or folder, 'gsm8k' or "
            "'toy:math?n=...'.",
            False,
        ),
    ],
)
def test_exit_code_message_and_time(runs, case, code, message, fast):
    tmp, results = runs
    done, seconds = results[case]
    ours = [line for line in done.stderr.splitlines() if line.startswith("resofilter")]
    assert done.returncode == code, done.stderr[-2000:]
    assert ours == [message.format(tmp=tmp)], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    if fast:
        assert seconds < FAST, f"{case} took {seconds:.1f} s"


def test_nothing_was_written(runs):
    tmp, _ = runs
    assert not (tmp / "out.parquet").exists() and not (tmp / "repo").exists() and not (tmp / "o2").exists()


def test_warnings_are_one_plain_line(monkeypatch, capsys):
    """A warning raised while a command runs is `resofilter <command>: warning: ...`, without the source path and
    code line Python prints; Python's own display is back once the command returns."""
    import warnings

    from resofilter_hf import cli
    from resofilter_hf.pipeline.results import TruncationWarning

    def add_warn(subparsers):
        parser = subparsers.add_parser("warn")
        parser.set_defaults(  # our own categories are UserWarnings: shown the same way
            func=lambda args: warnings.warn("63 rows are longer\n  than max_length", TruncationWarning, 1) or 0
        )

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, add_warn])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["warn"]) == 0
        assert capsys.readouterr().err == "resofilter warn: warning: 63 rows are longer than max_length\n"
        shown = warnings.showwarning
    assert cli.main(["warn"]) == 0 and warnings.showwarning is shown


def test_select_drops_each_columns_own_end_by_default(tmp_path):
    """`resofilter select --column resonance_alignment` drops the lowest alignment without being told (the
    registry's direction), and says which end it dropped."""
    from datasets import Dataset

    from resofilter_hf.provenance import write_parquet

    rows = Dataset.from_dict({"prompt": [f"q{i}" for i in range(4)], "resonance": [4.0, 3.0, 2.0, 1.0],
                              "resonance_alignment": [0.4, 0.3, 0.2, 0.1]})  # fmt: skip
    write_parquet(rows, tmp_path / "scored.parquet", {"scoring": {"column": "resonance"}})
    done = subprocess.run(
        [sys.executable, "-m", "resofilter_hf.cli", "select", str(tmp_path / "scored.parquet"),
         str(tmp_path / "kept.parquet"), "--keep", "0.5", "--column", "resonance_alignment"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "kept 2 of 4 rows by resonance_alignment (2 dropped at the lowest end" in done.stdout
    assert Dataset.from_parquet(str(tmp_path / "kept.parquet"))["prompt"] == ["q0", "q1"]
