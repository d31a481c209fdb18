"""Digests behind the scoring folder's name: every byte of every tensor, the config, the tokenizer."""

import shutil

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf.engine.fingerprint import config_digest, tensor_digest, tokenizer_digest
from resofilter_hf.toy import cached_tiny_model


def test_the_same_model_from_another_folder_has_the_same_digests(tmp_path):
    model_dir = cached_tiny_model(arch="llama")
    shutil.copytree(model_dir, tmp_path / "copy")
    a, b = AutoModelForCausalLM.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(tmp_path / "copy")
    assert tensor_digest(a) == tensor_digest(b, threads=1) and config_digest(a) == config_digest(b)
    tok_a, tok_b = AutoTokenizer.from_pretrained(model_dir), AutoTokenizer.from_pretrained(tmp_path / "copy")
    assert tokenizer_digest(tok_a) == tokenizer_digest(tok_b)


def test_any_weight_entry_any_buffer_the_config_and_the_template_change_a_digest():
    model_dir = cached_tiny_model(arch="llama")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    weights, config = tensor_digest(model), config_digest(model)
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight.view(-1)[-1] += 1e-6  # the last entry of one tensor
    assert tensor_digest(model) != weights
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rotary = model.model.rotary_emb
    rotary.inv_freq.mul_(1.0001)  # a non-persistent buffer (what rope_theta sets)
    assert tensor_digest(model) != weights
    model.config.rms_norm_eps = 1e-5
    assert config_digest(model) != config

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    before = tokenizer_digest(tokenizer)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert tokenizer_digest(tokenizer) != before
