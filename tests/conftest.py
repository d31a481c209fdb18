"""Shared test setup: fully offline, deterministic threads, and the tiny models built once per session."""

import os


# before anything imports huggingface_hub / datasets / tokenizers
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402


TORCH_THREADS = 1  # tiny models gain nothing from a second thread, and CI runs beside other work
torch.set_num_threads(TORCH_THREADS)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny Llama (seed 0, default sizes): load it with the Auto classes; do not write into it."""
    from resofilter_hf.toy.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), seed=0, arch="llama")


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory):
    """A saved tiny Qwen2 (q/k/v biases; seed 0, default sizes); read-only like `tiny_model_dir`."""
    from resofilter_hf.toy.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), seed=0, arch="qwen2")


@pytest.fixture(scope="session")
def gsm8k_dir():
    """The full GSM8K jsonl files: the folder RESOFILTER_GSM8K_DIR names, else ``shared/data/gsm8k`` beside this
    repository's root; the test is skipped when neither holds them."""
    root = Path(__file__).resolve().parents[1]
    folder = Path(os.environ.get("RESOFILTER_GSM8K_DIR") or root.parent / "shared" / "data" / "gsm8k")
    if not all((folder / f"{split}.jsonl").is_file() for split in ("train", "test")):
        pytest.skip(f"no GSM8K train.jsonl/test.jsonl in {folder} (set RESOFILTER_GSM8K_DIR)")
    return folder
