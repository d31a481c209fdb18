"""CLI errors, as a user meets them (subprocesses): one line on stderr naming the file, key or option, exit code 2
for usage and 1 for failures, the traceback only with --debug."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from datasets import Dataset

from resofilter_hf.provenance import read_provenance, with_provenance, write_parquet


HOSTILE = "res\x1b[2J\x1b[31monance\x1b]0;owned\x07"  # a column name that clears the screen, recolours, retitles
RECIPE = "model_name_or_path: {model}\ndataset_name: {data}\noutput_dir: {out}\nuse_cpu: true\nreport_to: none\n"


def _cases(tmp) -> dict[str, list[str]]:
    (tmp / "typo.yaml").write_text(
        RECIPE.format(model="toy:llama", data="toy:math?n=4", out=tmp / "o1") + "resonance_last_n_layer: 2\n"
    )
    (tmp / "good.yaml").write_text(RECIPE.format(model="toy:llama", data="toy:math?n=4", out=tmp / "o0"))
    (tmp / "bad_value.yaml").write_text(
        RECIPE.format(model="toy:llama", data="toy:math?n=4", out=tmp / "o2") + "resonance_weight_decay: .nan\n"
    )
    (tmp / "no_data.yaml").write_text(RECIPE.format(model="toy:llama", data=tmp / "missing.parquet", out=tmp / "o3"))
    (tmp / "no_model.yaml").write_text(RECIPE.format(model=tmp / "no-such-model", data="toy:math?n=4", out=tmp / "o4"))
    scored = with_provenance(
        Dataset.from_dict({"prompt": list("abcd"), "completion": list("efgh"), "resonance": [1.0, 2.0, 3.0, 4.0]}),
        scoring={"column": "resonance"},
    )
    write_parquet(scored, tmp / "scored.parquet", read_provenance(scored))
    write_parquet(Dataset.from_dict({"prompt": ["q"], "completion": ["a"]}), tmp / "plain.parquet")
    (tmp / "corrupt.parquet").write_bytes((tmp / "scored.parquet").read_bytes()[:300])  # a write cut short
    (tmp / "in").mkdir()
    Dataset.from_dict({"prompt": ["1+1?", "2+2?"], "completion": ["2", "4"]}).to_parquet(
        str(tmp / "in" / "pool.parquet")
    )
    pool = ["--dataset_name", str(tmp / "in" / "pool.parquet")]
    hostile = with_provenance(
        Dataset.from_dict({"prompt": list("abcd"), "completion": list("efgh"), HOSTILE: [1.0, 2.0, 3.0, 4.0]}),
        scoring={"column": HOSTILE},
    )
    write_parquet(hostile, tmp / "hostile.parquet", read_provenance(hostile))
    return {
        "missing_config": ["score", "--config", str(tmp / "nope.yaml")],
        "typo_key": ["score", "--config", str(tmp / "typo.yaml")],
        "bad_value": ["score", "--config", str(tmp / "bad_value.yaml")],
        "bad_flag": ["score", "--config", str(tmp / "good.yaml"), "--resonance_batch_size", "many"],
        "missing_dataset": ["score", "--config", str(tmp / "no_data.yaml")],
        "missing_model": ["score", "--config", str(tmp / "no_model.yaml")],
        "corrupt_parquet": ["select", str(tmp / "corrupt.parquet"), str(tmp / "out.parquet"), "--keep", "0.5"],
        "corrupt_debug": [
            "--debug",
            "select",
            str(tmp / "corrupt.parquet"),
            str(tmp / "out.parquet"),
            "--keep",
            "0.5",
        ],
        "select_onto_input": ["select", str(tmp / "scored.parquet"), str(tmp / "scored.parquet"), "--keep", "0.5"],
        "select_bad_suffix": ["select", str(tmp / "scored.parquet"), str(tmp / "kept.xlsx"), "--keep", "0.5"],
        "publish_unscored": ["publish", str(tmp / "plain.parquet"), "--local-dir", str(tmp / "repo")],
        "report_bad_column": ["report", str(tmp / "scored.parquet"), "--out", str(tmp / "r.html"), "--column", "nope"],
        "score_onto_input": ["score", "--config", str(tmp / "good.yaml"), *pool, "--scores_path",
                             str(tmp / "in" / "pool.parquet")],
        "stream_onto_input": ["score", "--config", str(tmp / "good.yaml"), *pool, "--streaming", "--scores_path",
                              str(tmp / "in")],
        "stream_to_a_file": ["score", "--config", str(tmp / "good.yaml"), *pool, "--streaming", "--scores_path",
                             str(tmp / "parts.jsonl")],
        "unknown_toy_data": ["score", "--config", str(tmp / "good.yaml"), "--dataset_name", "toy:maths?n=4"],
        "report_debug": ["--debug", "report", str(tmp / "scored.parquet"), "--out", str(tmp / "r.html"), "--column",
                         "nope"],
        "select_bad_column": ["select", str(tmp / "scored.parquet"), str(tmp / "k.parquet"), "--keep", "0.5",
                              "--column", "nope"],
        "select_bad_dedup": ["select", str(tmp / "scored.parquet"), str(tmp / "k.parquet"), "--keep", "0.5",
                             "--dedup-on", "prompt,nope"],
        "select_bad_strata": ["select", str(tmp / "scored.parquet"), str(tmp / "k.parquet"), "--keep", "0.5",
                              "--stratify-by", "nope"],
        "publish_bad_label": ["publish", str(tmp / "scored.parquet"), "--local-dir", str(tmp / "repo-l"),
                              "--label-column", "flw"],
        "select_misspelt_column": ["select", str(tmp / "scored.parquet"), str(tmp / "k.parquet"), "--keep", "0.5",
                                   "--column", "resonnance"],
        "publish_into_source": ["publish", str(tmp / "in" / "pool.parquet"), "--local-dir", str(tmp / "in")],
        "report_text_column": ["report", str(tmp / "scored.parquet"), "--out", str(tmp / "t.html"), "--column",
                               "prompt"],
        "report_unscored": ["report", str(tmp / "plain.parquet"), "--out", str(tmp / "u.html")],
        "select_unscored": ["select", str(tmp / "plain.parquet"), str(tmp / "k.parquet"), "--keep", "0.5"],
        "hostile_select": ["select", str(tmp / "hostile.parquet"), str(tmp / "kept.parquet"), "--keep", "0.5"],
        "hostile_column": ["report", str(tmp / "scored.parquet"), "--out", str(tmp / "r.html"), "--column", HOSTILE],
    }  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case run once, two at a time (each subprocess spends most of its time importing torch and TRL)."""
    tmp = tmp_path_factory.mktemp("cli-errors")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    def run(argv):
        cmd = [sys.executable, "-m", "resofilter_hf.cli", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=300)

    cases = _cases(tmp)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(cases, pool.map(run, cases.values())))
    return tmp, results


def _our_lines(result) -> list[str]:
    """stderr lines this program wrote (third-party import-time log lines aside)."""
    return [line for line in result.stderr.splitlines() if line.startswith("resofilter")]


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("missing_config", 2, r"resofilter score: error: --config .*nope\.yaml: no such file$"),
        ("typo_key", 2, r"unknown key 'resonance_last_n_layer'; did you mean 'resonance_last_n_layers'\?$"),
        ("bad_value", 2, r"error: `resonance_weight_decay` must be a finite number, got nan\.$"),
        ("bad_flag", 2, r"error: argument --resonance_batch_size.*: invalid int value: 'many'$"),
        ("missing_dataset", 1, r"resofilter score: `dataset_name` .*missing\.parquet: no such file or folder$"),
        ("missing_model", 1, r"resofilter score: `model_name_or_path` .*no-such-model: no such model folder$"),
        ("corrupt_parquet", 1, r"resofilter select: .*corrupt\.parquet is not a readable parquet file \("),
        ("select_onto_input", 2, r"error: the output .*scored\.parquet would overwrite the input"),
        ("select_bad_suffix", 2, r"error: cannot write .*kept\.xlsx: .*one of \['.parquet', '.jsonl', '.csv'\]"),
        ("publish_unscored", 1, r"resofilter publish: .*has no score column 'resonance'"),
        # an option naming no column of the file is a usage error; the file's own default column missing is not
        (
            "select_bad_column",
            2,
            r"^resofilter select: error: argument --column: 'nope' is not a column; columns "
            r"present: \['prompt', 'completion', 'resonance'\]$",
        ),
        ("select_bad_dedup", 2, r"^resofilter select: error: argument --dedup-on: \['prompt', 'nope'\] is not "),
        ("select_bad_strata", 2, r"^resofilter select: error: argument --stratify-by: 'nope' is not None, 'length' "),
        (
            "publish_bad_label",
            2,
            r"^resofilter publish: error: argument --label-column: \['flw'\] are not columns; "
            r"columns present: \['prompt', 'completion', 'resonance'\]$",
        ),
        (
            "select_misspelt_column",
            2,
            r"^resofilter select: error: argument --column: 'resonnance' is not a column "
            r"\(did you mean 'resonance'\?\); columns present: \[",
        ),
        (
            "publish_into_source",
            2,
            r"^resofilter publish: error: the output .*/in would overwrite the input "
            r".*in/pool\.parquet; write to another path\.$",
        ),
        (
            "report_text_column",
            2,
            r"^resofilter report: error: argument --column: 'prompt' holds string, not "
            r"numbers; scores must be int or float$",
        ),
        (
            "select_unscored",
            1,
            r"^resofilter select: select_by_resonance: the dataset has no score column 'resonance' "
            r"\(its provenance's, else the default\); name one with column= \(CLI: --column\); "
            r"score it first",
        ),
        (
            "report_unscored",
            1,
            r"^resofilter report: report: the dataset has no score column 'resonance' .*; score "
            r"it first",
        ),
        (
            "report_bad_column",
            2,
            r"^resofilter report: error: argument --column: 'nope' is not a column\. Score the dataset first .*; "
            r"columns present: \['prompt', 'completion', 'resonance'\]$",
        ),
        (
            "score_onto_input",
            2,
            r"^resofilter score: error: the output .*in/pool\.parquet would overwrite the input "
            r".*in/pool\.parquet; write to another path\.$",
        ),
        (
            "stream_onto_input",
            2,
            r"^resofilter score: error: the output .*/in would overwrite the input "
            r".*in/pool\.parquet; write to another path\.$",
        ),
        (
            "stream_to_a_file",
            2,
            r"^resofilter score: error: `scores_path` .*parts\.jsonl: with --streaming "
            r"\(dataset_streaming\) the scored rows go to a folder of parquet parts; give a "
            r"folder, such as .*/parts, or score without --streaming for one file\.$",
        ),
        (
            "unknown_toy_data",
            2,
            r"^resofilter score: error: `dataset_name` toy:maths\?n=4: unknown toy dataset "
            r"'maths'; the toy world has 'math'\.$",
        ),
    ],  # fmt: skip
)
def test_errors_are_one_line_with_the_right_exit_code(runs, case, code, message):
    import re

    result = runs[1][case]
    assert result.returncode == code, result.stderr
    lines = _our_lines(result)
    assert len(lines) == 1 and re.search(message, lines[0]), result.stderr
    assert "Traceback" not in result.stderr and "Repo id must be" not in result.stderr


def test_debug_shows_the_traceback(runs):
    result = runs[1]["corrupt_debug"]
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("resofilter select: ")
    result = runs[1]["report_debug"]  # report's errors go through the same handler
    assert result.returncode == 2 and "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("resofilter report: error: argument --column: 'nope'")


def test_failed_commands_leave_nothing_behind(runs):
    tmp, _ = runs
    assert not (tmp / "out.parquet").exists() and not (tmp / "kept.xlsx").exists() and not (tmp / "repo").exists()
    assert (tmp / "scored.parquet").stat().st_size > 300  # select onto its input left the input alone
    assert sorted(p.name for p in (tmp / "in").iterdir()) == ["pool.parquet"]  # score onto its input, both ways
    assert not (tmp / "parts.jsonl").exists() and not (tmp / "r.html").exists()


def test_names_from_a_file_reach_the_terminal_without_escapes(runs):
    """A score column named by a downloaded file's provenance, in `select`'s summary and in an error line: no
    escape sequence or control character is printed, the printable rest of the name is."""
    done = runs[1]["hostile_select"]
    assert done.returncode == 0, done.stderr
    assert "kept 2 of 4 rows by resonance (2 dropped at the highest end" in done.stdout
    error = runs[1]["hostile_column"]
    assert error.returncode == 2 and _our_lines(error)[0].startswith(
        "resofilter report: error: argument --column: 'res\\x1b[2J\\x1b[31monance\\x1b]0;owned\\x07' is not a column"
    )  # the value as Python writes it (repr): visible, inert
    for out in (done.stdout, done.stderr, error.stdout, error.stderr):
        assert "\x1b" not in out and "\x07" not in out
