"""`resofilter score --help` and `train --help`: short, grouped, built without TRL, and true to the dataclasses
(`jobs.fields` is checked against every field it names); `--help-all` lists every field."""

import dataclasses
import subprocess
import sys
import time

import pytest
from trl import ModelConfig

from resofilter_hf.config import ResonanceConfig
from resofilter_hf.jobs import DataArguments
from resofilter_hf.jobs.fields import GROUPS, short_field_names


DATACLASSES = (DataArguments, ResonanceConfig, ModelConfig)
HEAVY = ("torch", "transformers", "trl", "datasets")


def _fields() -> dict[str, dataclasses.Field]:
    found = {}
    for cls in DATACLASSES:
        for f in dataclasses.fields(cls):
            found.setdefault(f.name, f)  # the parser takes the first dataclass's field of a name
    return found


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _cli(*argv: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "resofilter_hf.cli", *argv], capture_output=True, text=True)
    return done, time.perf_counter() - started


@pytest.mark.parametrize("name,default,opening", [e for _, _, entries in GROUPS for e in entries], ids=lambda v: v)
def test_each_short_entry_is_its_fields_own_help_and_default(name, default, opening):
    field = _fields()[name]
    assert " ".join(field.metadata["help"].split()).startswith(opening), (name, field.metadata["help"])
    assert _default(field) == default, (name, _default(field))


def test_every_resonance_field_is_in_the_short_help():
    resonance = [f.name for f in dataclasses.fields(ResonanceConfig) if f.name.startswith("resonance_")]
    assert [n for n in resonance if n not in short_field_names()] == []
    assert len(short_field_names()) == len(set(short_field_names()))


@pytest.mark.parametrize("command", ["score", "train"])
def test_short_help_is_fast_grouped_and_names_the_command(command):
    done, seconds = _cli(command, "--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"usage: resofilter {command} --config RECIPE.yaml")
    assert len(lines) < 80 and seconds < 5, (len(lines), seconds)
    for heading in ("command options:", "data:", "model:", "training (SFTConfig):", "resonance (ResonanceConfig):"):
        assert heading in lines
    text = done.stdout
    for option in ("--config RECIPE.yaml", "--help-all", *(f"--{n} " for n in short_field_names())):
        assert option in text, option
    assert ("--streaming" in text) == (command == "score")
    assert "--resonance_lr                  Learning rate of the simulated step. (default: 1e-05)" in text


def test_short_help_imports_no_heavy_library():
    code = (
        "import sys\nfrom resofilter_hf import cli\ntry:\n    cli.main(['score', '--help'])\nexcept SystemExit:\n"
        f"    pass\nprint(sorted(set({HEAVY!r}) & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "[]", done.stdout[-500:] + done.stderr[-2000:]


def test_help_all_lists_every_field():
    done, _ = _cli("score", "--help-all")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: resofilter score --config RECIPE.yaml")
    missing = [name for name in _fields() if f"--{name} " not in done.stdout and f"--{name}\n" not in done.stdout]
    assert missing == []
