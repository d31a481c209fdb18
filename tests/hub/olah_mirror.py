"""A local stand-in for the Hub's read API: olah (a Hub mirror server, dev extra) on 127.0.0.1 in offline mode,
serving git repos from a folder. Stock clients (`load_dataset`, `snapshot_download`) read from it through
HF_ENDPOINT, over real HTTP. It is read-only: uploads answer 404/405, so writes are not covered by it.

Used by tests/hub/test_publish.py and bench/publish_example.py."""

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Mirror:
    root: Path
    endpoint: str

    def serve(self, folder: Path, repo_id: str) -> str:
        """Copy `folder` in as dataset repo `repo_id` (one git commit on main); returns the commit sha."""
        repo = self.root / "mirrors" / "datasets" / repo_id
        shutil.copytree(folder, repo)
        git = ["git", "-C", str(repo), "-c", "user.name=resofilter", "-c", "user.email=resofilter@localhost"]
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "staged by resofilter-hf"], check=True)
        return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    def client_env(self, home: Path) -> dict[str, str]:
        """The environment of a Hub client that talks to this mirror only (no token, no proxy, online mode)."""
        drop = {"HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}
        env = {k: v for k, v in os.environ.items() if k not in drop and "proxy" not in k.lower()}
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_HOME=str(home),
            NO_PROXY="127.0.0.1,localhost",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_IMPLICIT_TOKEN="1",
        )
        return env

    def open(self, request: str | urllib.request.Request, timeout: float = 10):
        """urllib, bypassing any proxy."""
        return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def olah_mirror(root: Path, start_timeout_s: float = 60) -> Iterator[Mirror]:
    """Run olah on a free loopback port with `root` as its home; stop it on exit."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mirrors").mkdir(exist_ok=True)
    port = _free_port()
    # with -c, olah ignores --host/--port: they go in the config
    (root / "config.toml").write_text(
        "[basic]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f"repos-path = {json.dumps(str(root / 'cache'))}\n"
        f"mirrors-path = [{json.dumps(str(root / 'mirrors'))}]\n"
        "[accessibility]\n"
        "offline = true\n"
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    mirror = Mirror(root=root, endpoint=f"http://127.0.0.1:{port}")
    with open(root / "olah.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "olah.server", "-c", "config.toml"], cwd=root, env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    mirror.open(f"{mirror.endpoint}/api/datasets/none/none/revision/main", timeout=2)
                    break
                except urllib.error.HTTPError:
                    break  # it answered
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        tail = (root / "olah.log").read_text(errors="replace")[-3000:]
                        raise RuntimeError(f"olah did not start on {mirror.endpoint}:\n{tail}") from None
                    time.sleep(0.2)
            yield mirror
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


CLIENT = """
import json, sys
from pathlib import Path
from datasets import load_dataset
from huggingface_hub import HfApi, snapshot_download

repo_id, out = sys.argv[1], Path(sys.argv[2])
for name in sys.argv[3:]:
    for split, ds in load_dataset(repo_id, name).items():
        ds.to_parquet(str(out / f"{name}-{split}.parquet"))
default = load_dataset(repo_id)
info = HfApi().repo_info(repo_id, repo_type="dataset", revision="main")  # olah needs the revision
snapshot = snapshot_download(repo_id, repo_type="dataset")
json.dump(
    {"default_splits": {s: len(d) for s, d in default.items()}, "sha": info.sha,
     "card_configs": info.card_data.configs, "snapshot": snapshot},
    open(out / "result.json", "w"),
)
"""


def read_back(mirror: Mirror, repo_id: str, configs: list[str], out: Path, home: Path, timeout_s: float = 300) -> dict:
    """In a fresh interpreter pointed at the mirror: `load_dataset(repo_id, c)` for each config (splits saved as
    ``out/<config>-<split>.parquet``), `load_dataset(repo_id)`, `repo_info` and `snapshot_download`. Returns
    {"default_splits", "sha", "card_configs", "snapshot"}."""
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        [sys.executable, "-c", CLIENT, repo_id, str(out), *configs],
        env=mirror.client_env(home),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if run.returncode != 0:
        raise RuntimeError(f"read-back client failed:\n{run.stderr[-3000:]}")
    return json.loads((out / "result.json").read_text())


def sha256_tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder`."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
