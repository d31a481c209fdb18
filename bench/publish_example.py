"""Published-then-read-back example: score toy data, stage the Hub repo, serve it over HTTP, load it back.

1. 240 synthetic math problems (30 % with labelled flaws) scored by `ResonanceTrainer.score()` with a tiny
   random-weight Llama built locally (the scores are real resonance scores of that toy model, not of a
   pretrained one: the example shows the publishing path, not the paper's result).
2. `publish_dataset(..., configs=[0.5, 0.25], push=False)` stages the repo: parquet per config, card, histogram.
3. olah (a Hub mirror server) serves the staged folder as a git repo on 127.0.0.1; a fresh interpreter with
   HF_ENDPOINT pointed at it runs `load_dataset(repo_id, config)`, `repo_info` and `snapshot_download`.
4. Writes bench/results/publish_example/: README.md (the rendered card), images/ (its histogram) and
   readback.json (row counts staged vs read back, whether every config and split came back identical).

Run from the repository root:  python bench/publish_example.py
"""

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hub"))  # the olah helper lives with the tests that use it
sys.path.insert(0, str(ROOT))

from olah_mirror import olah_mirror, read_back, sha256_tree  # noqa: E402

from resofilter_hf import ResonanceConfig, ResonanceTrainer  # noqa: E402
from resofilter_hf.hub.publish import publish_dataset  # noqa: E402
from resofilter_hf.provenance import load_scored  # noqa: E402
from resofilter_hf.toy import build_tiny_model, make_math_problems  # noqa: E402


THREADS = 2
REPO_ID = "resofilter/toy-math-resonance"
OUT = ROOT / "bench" / "results" / "publish_example"


def main() -> None:
    torch.set_num_threads(THREADS)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    timings = {}
    with tempfile.TemporaryDirectory(prefix="resofilter-publish-example-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        model_dir = build_tiny_model(tmp / "model", seed=0, arch="llama")
        data = make_math_problems(240, seed=0, flaw_rate=0.3)
        trainer = ResonanceTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
            args=ResonanceConfig(
                output_dir=str(tmp / "trainer"), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True
            ),
            train_dataset=data,
            processing_class=AutoTokenizer.from_pretrained(model_dir),
        )
        scored = trainer.score()
        timings["score_s"] = round(time.perf_counter() - start, 2)

        start = time.perf_counter()
        staged = publish_dataset(scored, REPO_ID, configs=[0.5, 0.25], local_dir=tmp / "staged", push=False)
        timings["stage_s"] = round(time.perf_counter() - start, 2)

        start = time.perf_counter()
        with olah_mirror(tmp / "olah") as mirror:
            sha = mirror.serve(staged.folder, REPO_ID)
            result = read_back(mirror, REPO_ID, list(staged.configs), tmp / "client", home=tmp / "hf")
        timings["serve_and_read_back_s"] = round(time.perf_counter() - start, 2)

        identical = {}
        for name, splits in staged.configs.items():
            for split in splits:
                staged_file = staged.folder / "data" / name / f"{split}-00000-of-00001.parquet"
                back = load_scored(tmp / "client" / f"{name}-{split}.parquet").to_pandas()
                mine = load_scored(staged_file).to_pandas()
                identical[f"{name}/{split}"] = bool(mine.equals(back)) and len(back) == splits[split]
        report = {
            "repo_id": REPO_ID,
            "served_commit": sha,
            "repo_info_sha_matches": result["sha"] == sha,
            "configs_rows_staged": staged.configs,
            "rows_identical_after_read_back": identical,
            "default_config_splits_read_back": result["default_splits"],
            "snapshot_identical_to_staged_folder": sha256_tree(Path(result["snapshot"])) == sha256_tree(staged.folder),
            "card_yaml_configs_via_repo_info": [c["config_name"] for c in result["card_configs"]],
            "flaw_counts": pd.Series(scored["flaw"]).value_counts().to_dict(),
            "torch_threads": THREADS,
            "timings": timings,
        }

        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        shutil.copy(staged.folder / "README.md", OUT / "README.md")
        shutil.copytree(staged.folder / "images", OUT / "images")
        (OUT / "readback.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
