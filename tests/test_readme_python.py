"""The README's Python snippets run as written: each ```python block in a fresh folder, in a subprocess, offline."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def test_the_readme_shows_python():
    assert SNIPPETS and "ResonanceTrainer" in SNIPPETS[0]


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs_offline_as_written(index, tmp_path):
    code = SNIPPETS[index]
    env = {**os.environ, **OFFLINE, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    if 'print(f"kept {len(kept)} of {len(scored)} rows")' in code:  # 200 distinct toy questions, keep=0.5
        assert "kept 100 of 200 rows" in done.stdout.splitlines(), done.stdout[-2000:]
