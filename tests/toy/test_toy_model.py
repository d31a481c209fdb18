"""The tiny model factory: Auto-loadable folders, a chat template TRL can mask, byte-identical rebuilds."""

import hashlib
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf.toy.data import make_math_problems
from resofilter_hf.toy.model import build_tiny_model, cached_tiny_model


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def llama(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def pairs():
    return make_math_problems(40, seed=11, style="conversational")


def test_folder_loads_with_the_auto_classes(tiny_model_dir, tiny_qwen_dir, llama):
    model, tok = llama
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(
        p.name for p in tiny_model_dir.iterdir()
    )
    assert type(model).__name__ == "LlamaForCausalLM"
    qwen = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir)
    assert type(qwen).__name__ == "Qwen2ForCausalLM"
    for m in (model, qwen):
        assert len(m.model.layers) == 4
        up = m.get_submodule("model.layers.3.mlp.up_proj")
        assert tuple(up.weight.shape) == (128, 64)
        assert m.config.vocab_size == len(tok)
        assert m.dtype == torch.float32
    assert qwen.model.layers[0].self_attn.q_proj.bias is not None
    assert model.model.layers[0].self_attn.q_proj.bias is None
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 1_000_000


def test_special_tokens(llama):
    _, tok = llama
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "<|end|>", "<pad>")
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    ids = tok("Ava buys 3 pens.").input_ids
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.decode(ids, skip_special_tokens=True) == "Ava buys 3 pens."


def test_every_arch_tokenizes_the_same(tiny_model_dir, tiny_qwen_dir, pairs):
    """transformers rebuilds a qwen2 tokenizer with its own pipeline; the toy one must survive that unchanged."""
    a, b = AutoTokenizer.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_qwen_dir)
    assert len(a) == len(b) and a.get_added_vocab() == b.get_added_vocab()
    for row in pairs:
        text = row["prompt"][0]["content"] + "\n" + row["completion"][0]["content"]
        assert a(text).input_ids == b(text).input_ids
        assert a.apply_chat_template(row["prompt"] + row["completion"]) == b.apply_chat_template(
            row["prompt"] + row["completion"]
        )


def test_chat_template_renders_prompt_completion_pairs(llama, pairs):
    _, tok = llama
    for row in pairs:
        prompt, completion = row["prompt"], row["completion"]
        text_p = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        text_pc = tok.apply_chat_template(prompt + completion, tokenize=False)
        question, answer = prompt[0]["content"], completion[0]["content"]
        assert text_p == f"<s><|user|>\n{question}<|end|>\n<|assistant|>\n"
        assert text_pc == text_p + answer + "<|end|>\n"
        ids_p = tok.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"]
        out = tok.apply_chat_template(prompt + completion, return_dict=True, return_assistant_tokens_mask=True)
        assert out["input_ids"][: len(ids_p)] == ids_p  # token-level prefix: TRL's completion mask is exact
        masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
        assert masked == out["input_ids"][len(ids_p) : -1]  # content and <|end|>, not the trailing newline
        assert tok.decode(masked) == answer + "<|end|>"


def test_chat_template_system_turns_and_bad_roles(llama):
    _, tok = llama
    text = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], tokenize=False
    )
    assert text == "<s><|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n"
    with pytest.raises(Exception, match="unsupported chat role: tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_trl_accepts_the_template_for_assistant_only_loss(llama):
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    _, tok = llama
    assert has_generation_markers(tok.chat_template)
    assert is_chat_template_stop_token_trained(tok)


def test_forward_and_backward(llama, pairs):
    model, tok = llama
    batch = tok.apply_chat_template(
        [r["prompt"] + r["completion"] for r in pairs.select(range(4))],
        return_dict=True,
        padding=True,
        return_tensors="pt",
    )
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    assert torch.isfinite(loss) and abs(loss.item() - torch.log(torch.tensor(len(tok))).item()) < 1.0
    loss.backward()
    assert model.model.layers[3].mlp.up_proj.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_same_seed_same_bytes_other_seed_other_weights(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0, arch="llama")
    assert digests(again) == digests(tiny_model_dir)
    other = digests(build_tiny_model(tmp_path / "other", seed=1, arch="llama"))
    assert other["model.safetensors"] != digests(tiny_model_dir)["model.safetensors"]
    assert other["tokenizer.json"] == digests(tiny_model_dir)["tokenizer.json"]  # tokenizer does not depend on seed


def test_same_bytes_in_a_fresh_process(tiny_qwen_dir, tmp_path):
    """Hash seeds differ between processes; the tokenizer trainer must not depend on them."""
    code = (
        "import sys; from resofilter_hf.toy.model import build_tiny_model; "
        "build_tiny_model(sys.argv[1], seed=0, arch='qwen2')"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True)
    assert digests(tmp_path) == digests(tiny_qwen_dir)


def test_gemma2_and_custom_sizes(tmp_path):
    folder = build_tiny_model(tmp_path, arch="gemma2", num_layers=3, hidden_size=32, intermediate_size=48)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__name__ == "Gemma2ForCausalLM" and len(model.model.layers) == 3
    assert tuple(model.model.layers[2].mlp.up_proj.weight.shape) == (48, 32)


def test_custom_corpus_and_vocab(tmp_path):
    corpus = ["alpha beta gamma delta " * 20, "epsilon zeta eta theta " * 20]
    folder = build_tiny_model(tmp_path, corpus=corpus, vocab_size=400)
    tok = AutoTokenizer.from_pretrained(folder)
    assert len(tok) <= 400
    assert len(tok("alpha beta gamma delta").input_ids) <= 5  # words of the corpus became single tokens


def test_cached_helper_builds_once(tiny_model_dir):
    first = cached_tiny_model()
    assert cached_tiny_model() == first
    assert digests(first) == digests(tiny_model_dir)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown arch 'gpt9'.*llama"):
        build_tiny_model("/nonexistent", arch="gpt9")
    with pytest.raises(ValueError, match="num_heads"):
        build_tiny_model("/nonexistent", hidden_size=60, num_heads=8)
