"""`resofilter demo --quick` end to end, and the subcommand registry."""

import json

import numpy as np
import pytest

from resofilter_hf import cli
from resofilter_hf.experiments.story import StorySettings
from resofilter_hf.provenance import load_scored, read_provenance


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    capture = pytest.MonkeyPatch()
    printed = []
    capture.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    try:
        assert cli.main(["demo", "--quick", "--output-dir", str(out), "--seed", "0"]) == 0
    finally:
        capture.undo()
    return out, "\n".join(printed)


def test_demo_writes_everything_under_one_folder(demo_run):
    out, printed = demo_run
    for rel in ("summary.json", "story.json", "scored.parquet", "score_histograms.png", "roc.png", "selections.png"):
        assert (out / rel).is_file(), rel
    assert 'id="rows-cut"' in (out / "report.html").read_text(encoding="utf-8")
    assert f"open the report: {(out / 'report.html').resolve()}" in printed
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pkl")), "no pickled files"
    assert f"everything is in {out.resolve()}" in printed


def test_demo_scores_every_pool_row_and_prints_the_table(demo_run):
    out, printed = demo_run
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


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


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
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--seed", "x"])
    assert exit_info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
