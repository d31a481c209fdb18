"""`resofilter demo --quick` end to end (as a user runs it: a subprocess), its log, and the subcommand registry."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from resofilter_hf import cli
from resofilter_hf.demo.story import StorySettings
from resofilter_hf.provenance import load_scored, read_provenance


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    command = [sys.executable, "-m", "resofilter_hf.cli", "demo", "--quick", "--output-dir", str(out), "--seed", "0"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return out, run.stdout, run.stderr


STEP = re.compile(r"\[\d/5\] \w")
TABLE = re.compile(r"\|.*\|")
WARNING = re.compile(r"resofilter demo: (warning|\w+Warning): .+")  # one plain line: no source path or code line


def test_demo_writes_everything_under_one_folder(demo_run):
    out, printed, _ = demo_run
    for rel in ("summary.json", "story.json", "scored.parquet", "score_histograms.png", "roc.png", "selections.png"):
        assert (out / rel).is_file(), rel
    assert 'id="rows-cut"' in (out / "report.html").read_text(encoding="utf-8")
    assert f"open the report: {(out / 'report.html').resolve()}" in printed
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pkl")), "no pickled files"
    assert f"everything is in {out.resolve()}" in printed


def test_demo_scores_every_pool_row_and_prints_the_table(demo_run):
    out, printed, _ = demo_run
    summary = json.loads((out / "summary.json").read_text())
    scored = load_scored(out / "scored.parquet")
    quick = StorySettings.quick()
    assert len(scored) == summary["n"]["pool"] == quick.n_pool
    assert summary["flaw_counts"] == {f: list(scored["flaw"]).count(f) for f in summary["flaw_counts"]}
    assert set(scored["resonance_status"]) == {"ok"} and np.isfinite(scored["resonance"]).all()
    assert read_provenance(scored)["scoring"]["optimizer"] == "adamw"
    assert summary["torch_threads"] == 1
    selections = {row["column"]: row for row in summary["selections"]}
    assert selections["full"]["n_train"] == quick.n_pool
    assert selections["resonance"]["n_train"] == quick.n_pool // 2
    assert "| selection |" in printed and "| resonance |" in printed


def test_demo_log_shows_only_progress_and_results(demo_run):
    """stdout: the header, one line per step, the tables, the next commands; stderr: nothing but plain one-line
    warnings (no training bars in a log that is not a terminal, no Trainer metric dicts, no source paths, no
    deprecation warnings, no library info lines)."""
    out, stdout, stderr = demo_run
    lines = stdout.splitlines()
    assert lines[0].startswith("resofilter demo (quick size, seed 0, 1 torch thread) -> ")
    assert [line for line in lines if STEP.match(line)] == [line for line in lines[1:6]]
    rest = [line for line in lines[6:] if line and not TABLE.fullmatch(line)]
    summary = json.loads((out / "summary.json").read_text())
    assert rest[0] == "What moved:" and summary["what_moved"]
    assert summary["what_moved"][-1].startswith("This is one seed on 8 test problems: ")  # quick(): n_test 8
    assert rest[1 : 1 + len(summary["what_moved"])] == [f"- {line}" for line in summary["what_moved"]]
    rest = rest[1 + len(summary["what_moved"]) :]
    assert rest[0].startswith("- --quick: sizes so small that models learn nothing") and "mean nothing" in rest[1]
    rest = rest[2:]
    assert rest[0] == "Next: keep half by resonance, or stage a dataset repo with its card:"
    assert rest[1].startswith("  resofilter select ") and rest[2].startswith("  resofilter publish ")
    assert rest[3].startswith("done in ") and rest[4] == f"open the report: {(out / 'report.html').resolve()}"
    assert len(rest) == 5, rest
    assert "{" not in stdout and "{" not in stderr  # no log dicts anywhere
    noise = [part for part in re.split(r"[\r\n]", stderr) if part.strip() and not WARNING.fullmatch(part)]
    assert noise == [], noise[:5]
    assert "pin_memory" not in stderr  # the trainers run with use_cpu, which turns pinned memory off


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_demo_help_says_what_runs_and_that_it_is_one_seed(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "by the paper's score, alignment, loss and random" in text and "on this one seed" in text


def test_version(capsys):
    from resofilter_hf import __version__

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_a_subcommand_is_one_function_and_one_registry_line(monkeypatch):
    seen = {}

    def add_echo(subparsers):
        parser = subparsers.add_parser("echo")
        parser.add_argument("word")
        parser.set_defaults(func=lambda args: seen.setdefault("word", args.word) and 7)

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, add_echo])
    assert cli.main(["echo", "hi"]) == 7 and seen == {"word": "hi"}


def test_bad_arguments_exit_with_usage(capsys):
    assert cli.main(["demo", "--seed", "x"]) == 2
    err = capsys.readouterr().err
    assert "invalid int value" in err and len(err.strip().splitlines()) == 1
    for threads in ("0", "-2", "x"):
        assert cli.main(["demo", "--threads", threads]) == 2
        err = capsys.readouterr().err
        assert f"argument --threads: must be a whole number >= 1, got '{threads}'" in err, err
        assert len(err.strip().splitlines()) == 1


def test_on_a_terminal_each_training_bar_is_erased_when_it_ends(tmp_path):
    """Under a pseudo-terminal (120 columns) the trainings draw their bars, one line that each erases when done:
    the screen ends with the step lines and the tables, no bar left (one bar at a time, not one per training)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    command = [sys.executable, "-m", "resofilter_hf.cli", "demo", "--quick", "--output-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closes with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.wait(timeout=600) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    lines = [line.removesuffix("\r") for line in text.split("\n")]  # the terminal ends each line with \r\n
    screen = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line.split("\r")[-1]) for line in lines]
    assert text.count("%|") >= 7  # the warm-up and six retrainings each drew a bar
    assert [line for line in screen if "%|" in line] == []
    assert sum(bool(STEP.match(line)) for line in screen) == 5
