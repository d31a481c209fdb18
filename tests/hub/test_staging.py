"""Staging a repo folder never deletes, replaces or uploads what it did not write, recovers from its own killed
run (this version's and the one before), and works in '.' and through a symlinked folder."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from datasets import load_dataset
from publishing_data import scored_dataset
from test_publish import RecordingHfApi, assert_same_rows, staged_files

from resofilter_hf.engine.files import temporary_path
from resofilter_hf.hub.publish import publish_dataset
from resofilter_hf.hub.staging import RECORD, STAGED_MARK, WORK_NAME, WORK_PREFIX
from resofilter_hf.selection import select_by_resonance


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def ours(folder: Path) -> set[str]:
    return set(json.loads((folder / RECORD).read_text())["files"])


def test_restaging_keeps_the_users_files_and_uploads_only_its_own(tmp_path, monkeypatch):
    ds = scored_dataset(24)
    folder = tmp_path / "repo"
    publish_dataset(ds, local_dir=folder, configs=[0.5])
    (folder / "NOTES.md").write_text("mine")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]")
    (folder / "data" / "extra.csv").write_text("a,b")  # beside staged files, in a staged folder
    out = publish_dataset(ds, local_dir=folder)  # keep50 is no longer asked for
    assert (folder / "NOTES.md").read_text() == "mine" and (folder / ".git" / "config").read_text() == "[core]"
    assert (folder / "data" / "extra.csv").read_text() == "a,b"
    assert not (folder / "data" / "keep50").exists() and list(out.configs) == ["default"]
    assert ours(folder) == {"README.md", "data/default/train-00000-of-00001.parquet", *(
        f"images/resonance_default{k}.png" for k in ("", "_confounds", "_keep"))}  # fmt: skip
    api = RecordingHfApi()
    publish_dataset(ds, "me/demo", local_dir=folder, api=api)
    assert set(api.uploaded) == ours(folder)  # NOTES.md, .git and extra.csv stay local


def test_a_folder_of_the_users_is_refused_untouched(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text(f"How we stage:\n{STAGED_MARK}\n")  # merely quotes the marker
    (folder / "train.py").write_text("print('train')")
    before = {p: p.read_bytes() for p in folder.rglob("*")}
    with pytest.raises(FileExistsError, match=r"project is not empty and holds no record of a resofilter-hf staging"):
        publish_dataset(scored_dataset(12), local_dir=folder)
    assert {p: p.read_bytes() for p in folder.rglob("*")} == before


def test_a_user_file_in_the_way_is_refused_before_anything_moves(tmp_path):
    folder = tmp_path / "repo"
    publish_dataset(scored_dataset(12), local_dir=folder)
    mine = folder / "data" / "keep50" / "train-00000-of-00001.parquet"
    mine.parent.mkdir()
    mine.write_bytes(b"my own file")
    readme = (folder / "README.md").read_bytes()
    with pytest.raises(FileExistsError, match="keep50/train-00000-of-00001.parquet was not written by resofilter"):
        publish_dataset(scored_dataset(12), local_dir=folder, configs=[0.5])
    assert mine.read_bytes() == b"my own file" and (folder / "README.md").read_bytes() == readme
    assert not list(folder.glob(f"{WORK_PREFIX}*"))


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from publishing_data import scored_dataset
from resofilter_hf.hub import staging
from resofilter_hf.hub.publish import publish_dataset

moves, replace = [], os.replace
def replace_then_die(src, dst):  # counts the moves of staged files into the folder ("build": any write first)
    if {after!r} == "build" or (staging.WORK_PREFIX not in str(dst) and not str(dst).endswith(staging.RECORD)):
        moves.append(dst)
    if len(moves) == (1 if {after!r} == "build" else {after!r}):
        os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup runs
    replace(src, dst)
os.replace = replace_then_die
publish_dataset(scored_dataset(24), local_dir={folder!r}, configs=[0.25])
"""


@pytest.mark.parametrize("after", ["build", 1, 3])
def test_a_killed_restaging_is_finished_by_the_next_run(after, tmp_path):
    ds = scored_dataset(24)
    folder = tmp_path / "repo"
    publish_dataset(ds, local_dir=folder, configs=[0.5])
    code = KILLED_RUN.format(tests=str(Path(__file__).parent), after=after, folder=str(folder))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert list(folder.glob(f"{WORK_PREFIX}*"))  # the dead run's work folder is still there
    if after != "build":  # killed while moving: the record names the old and the new files
        assert {"data/keep50/train-00000-of-00001.parquet", "data/keep25/train-00000-of-00001.parquet"} <= ours(folder)
    publish_dataset(ds, local_dir=folder, configs=[0.5])  # the next run, in this process
    assert not list(folder.glob(f"{WORK_PREFIX}*")) and not (folder / "data" / "keep25").exists()
    assert set(staged_files(folder)) == ours(folder) | {RECORD}
    loaded = load_dataset(str(folder), "keep50", cache_dir=str(tmp_path / "cache"))["train"]
    assert_same_rows(loaded, select_by_resonance(ds, keep=0.5))


def test_the_earlier_versions_interrupted_restaging_is_rolled_back(tmp_path):
    """The version before this one moved the old staging to .NAME.PID.old and built anew; killed in between, it
    left both, and every later run was refused."""
    ds = scored_dataset(24)
    folder = tmp_path / "stage"
    publish_dataset(ds, local_dir=folder, configs=[0.5])
    (folder / RECORD).unlink()  # an earlier version kept no record
    aside = tmp_path / f".stage.{dead_pid()}.old"
    folder.rename(aside)
    (folder / "data" / "default").mkdir(parents=True)  # the half-built new staging
    (folder / "data" / "default" / ".train-00000-of-00001.parquet.123.partial").write_bytes(b"half")
    with pytest.warns(UserWarning, match="to put back the staging an interrupted earlier run had set aside"):
        publish_dataset(ds, local_dir=folder)  # the half-built one has no README (no marker): moved, not deleted
    [half] = tmp_path.glob("stage.moved-aside-*")
    assert (half / "data" / "default" / ".train-00000-of-00001.parquet.123.partial").read_bytes() == b"half"
    assert not aside.exists() and not (folder / "data" / "keep50").exists()
    assert set(staged_files(folder)) == ours(folder) | {RECORD}


def test_only_work_folders_of_writers_known_gone_are_removed(tmp_path):
    """Work folders are named like every temporary file (host, process, thread, random); the next run removes one
    only when its writer is known to be gone: a dead process of this host. On a shared filesystem a process of
    another host, or a name of no known scheme, may still run there, and its folder is left alone."""
    ds = scored_dataset(12)
    folder = tmp_path / "repo"
    publish_dataset(ds, local_dir=folder)
    mine = temporary_path(folder / WORK_NAME).name  # this host, this process: ".resofilter-staging.<host>-<pid>-..."
    assert mine.startswith(WORK_PREFIX) and f"-{os.getpid()}-" in mine
    dead = mine.replace(f"-{os.getpid()}-", f"-{dead_pid()}-")
    elsewhere = f"{WORK_PREFIX}another_host-{dead_pid()}-1.0a1b2c3d.partial"
    unknown = f"{WORK_PREFIX}{dead_pid()}.0a1b2c3d"
    for name in (dead, elsewhere, unknown):
        (folder / name / "data").mkdir(parents=True)
        (folder / name / "data" / "x.parquet").write_bytes(b"in progress")
    publish_dataset(ds, local_dir=folder)
    assert not (folder / dead).exists()
    assert (folder / elsewhere / "data" / "x.parquet").read_bytes() == b"in progress"
    assert (folder / unknown / "data" / "x.parquet").read_bytes() == b"in progress"


def test_a_users_folder_shaped_like_a_staging_is_never_deleted(tmp_path):
    """A folder of the user's holding only README.md, data/ and images/ (no staging marker), beside an earlier
    version's stale `.NAME.PID.old`: putting that staging back moves the user's folder aside, whole, and says
    where; nothing is deleted."""
    ds = scored_dataset(24)
    old = tmp_path / "old"
    publish_dataset(ds, local_dir=old)
    (old / RECORD).unlink()  # an earlier version kept no record
    aside = tmp_path / f".stage.{dead_pid()}.old"
    old.rename(aside)
    folder = tmp_path / "stage"
    (folder / "data").mkdir(parents=True)
    (folder / "images").mkdir()
    (folder / "README.md").write_text("# my thesis data\n")
    (folder / "data" / "train.csv").write_text("a,b\n1,2\n")
    (folder / "images" / "plot.png").write_bytes(b"png")
    mine = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.warns(UserWarning, match=r"publish_dataset: moved .*stage to .*stage\.moved-aside-[0-9a-f]+ .*nothing "
                      "was deleted"):  # fmt: skip
        publish_dataset(ds, local_dir=folder)
    [kept] = tmp_path.glob("stage.moved-aside-*")
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == mine
    assert not aside.exists() and set(staged_files(folder)) == ours(folder) | {RECORD}


def test_local_dir_dot_and_a_symlinked_folder(tmp_path, monkeypatch):
    ds = scored_dataset(12)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    publish_dataset(ds, local_dir=".")
    assert f'load_dataset("{here}", "default")' in (here / "README.md").read_text()
    target = tmp_path / "target"
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    target.mkdir()
    for configs in ([0.5], None):
        publish_dataset(ds, local_dir=link, configs=configs)
        assert link.is_symlink() and (target / "README.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here", "link", "target"]  # no .link.<pid>.old
    assert not (target / "data" / "keep50").exists()


def test_the_cli_help_says_what_the_folder_gets():
    done = subprocess.run([sys.executable, "-m", "resofilter_hf.cli", "publish", "--help"], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "replaces or removes only files an earlier staging wrote there" in text
    assert "your own files in the folder are left alone and never uploaded" in text
