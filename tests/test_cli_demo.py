"""`resofilter demo --quick` end to end, and the subcommand registry."""

import json
import math

import pytest
from safetensors.torch import load_file

from resofilter_hf import cli
from resofilter_hf.demo import DemoSettings, make_data


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert cli.main(["demo", "--quick", "--output-dir", str(out), "--seed", "0", "--threads", "2"]) == 0
    return out


def test_demo_writes_everything_under_one_folder(demo_dir, capsys):
    for rel in (
        "summary.json",
        "data/train.jsonl",
        "data/test.jsonl",
        "base-model/config.json",
        "base-model/model.safetensors",
        "sft/model/model.safetensors",
        "sft/model/tokenizer.json",
    ):
        assert (demo_dir / rel).is_file(), rel
    assert not list(demo_dir.rglob("*.bin")), "no pickled files"


def test_demo_summary_and_training(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    sft = summary["sft"]
    assert math.isfinite(sft["train_loss"]) and sft["logged_losses"]
    assert all(math.isfinite(x) for x in sft["logged_losses"])
    assert sft["logged_losses"][-1] < sft["logged_losses"][0]
    quick = DemoSettings.quick()
    assert sft["steps"] == math.ceil(quick.n_train / quick.batch_size)
    assert summary["torch_threads"] == 2
    train = [json.loads(line) for line in (demo_dir / "data/train.jsonl").read_text().splitlines()]
    assert len(train) == quick.n_train
    assert summary["flaw_counts"] == {f: sum(r["flaw"] == f for r in train) for f in summary["flaw_counts"]}
    before = load_file(demo_dir / "base-model/model.safetensors")
    after = load_file(demo_dir / "sft/model/model.safetensors")
    assert before.keys() == after.keys()
    name = "model.layers.3.mlp.up_proj.weight"
    assert not after[name].equal(before[name])


def test_demo_data_is_reproducible(tmp_path):
    settings = DemoSettings(n_train=60, n_test=20)
    make_data(tmp_path / "a", settings, seed=4)
    make_data(tmp_path / "b", settings, seed=4)
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / "a/data" / name).read_bytes() == (tmp_path / "b/data" / name).read_bytes()
    test_questions = {json.loads(x)["prompt"][0]["content"] for x in (tmp_path / "a/data/test.jsonl").open()}
    train_questions = {json.loads(x)["prompt"][0]["content"] for x in (tmp_path / "a/data/train.jsonl").open()}
    assert not test_questions & train_questions


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
