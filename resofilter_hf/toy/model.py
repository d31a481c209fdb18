"""A tiny causal LM built locally, so scoring and training run with nothing from the Hub.

`build_tiny_model` trains a small byte-level BPE tokenizer, wraps it with a chat template, initialises a small
decoder from a seeded config and saves both with ``save_pretrained``; the folder then loads with
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` as a Hub model would.

Chat format (special tokens ``<s>``, ``<|system|>``, ``<|user|>``, ``<|assistant|>``, ``<|end|>``, ``<pad>``)::

    <s><|user|>\\n{question}<|end|>\\n<|assistant|>\\n{solution}<|end|>\\n

``<|end|>`` is the EOS token and closes every turn. Assistant content and its ``<|end|>`` sit inside
``{% generation %}`` markers, so TRL's ``assistant_only_loss`` trains the model to stop. Plain-text encoding
prepends ``<s>`` (as Llama tokenizers do); chat rendering writes it itself.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .data import toy_corpus


BOS, EOS, PAD, UNK = "<s>", "<|end|>", "<pad>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, *ROLE_TOKENS)

# The pre-tokenizer of Qwen2/Llama-3 style tokenizers (digits split one by one). transformers rebuilds a qwen2
# model's tokenizer with exactly this pipeline whatever tokenizer.json says, so every arch gets the same one.
PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>\n{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}{{ '\\n' }}"
    "{% elif message['role'] in ['system', 'user'] %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% else %}"
    "{{ raise_exception('unsupported chat role: ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# name -> (config class, model class), by transformers class name (imported when used). Each is one model family's
# layout of the MLP up-projection (resofilter_hf.engine.architectures.UP_PROJECTIONS has an entry per type here).
ARCHITECTURES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),  # no attention biases, untied embeddings
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),  # q/k/v biases
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),  # the paper's family: extra norms, soft-capping, tied
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM"),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
    "olmo": ("OlmoConfig", "OlmoForCausalLM"),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM"),
    "cohere": ("CohereConfig", "CohereForCausalLM"),
    "cohere2": ("Cohere2Config", "Cohere2ForCausalLM"),
    "granite": ("GraniteConfig", "GraniteForCausalLM"),
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM"),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM"),  # mlp.dense_h_to_4h
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),  # Conv1D mlp.c_fc, weight stored [in, out]
    "phi3": ("Phi3Config", "Phi3ForCausalLM"),  # fused mlp.gate_up_proj
    "lfm2": ("Lfm2Config", "Lfm2ForCausalLM"),  # conv and attention layers, feed_forward.w1/w3/w2
    "nemotron_h": ("NemotronHConfig", "NemotronHForCausalLM"),  # one mixer per layer: mamba/attention/mlp/moe
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM"),  # fused 3-D experts + a shared expert
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM"),  # fused 3-D experts
    "mixtral": ("MixtralConfig", "MixtralForCausalLM"),  # fused 3-D experts
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM"),  # fused experts stored [in, out], gate/up interleaved
    "gemma4_text": ("Gemma4TextConfig", "Gemma4ForCausalLM"),  # an MLP and fused experts in every layer
    "gemma3": ("Gemma3Config", "Gemma3ForConditionalGeneration"),  # vision-language: SigLIP tower + Gemma 3
    "gemma4": ("Gemma4Config", "Gemma4ForConditionalGeneration"),  # vision-language: clipped-linear tower
}
VLM_ARCHITECTURES = ("gemma3", "gemma4")  # text model config nested as text_config, a tiny vision tower beside it

MAX_POSITIONS = 1024


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `corpus`, with the special tokens and chat template above."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
    )


def tiny_config(
    arch: str,
    tokenizer: PreTrainedTokenizerFast,
    *,
    num_layers: int = 4,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_heads: int = 4,
    num_kv_heads: int = 2,
):
    """The model config for `arch`, sized as given, with the tokenizer's vocabulary and special token ids."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose from {sorted(ARCHITECTURES)}")
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must divide by num_heads ({num_heads}) and num_heads by "
            f"num_kv_heads ({num_kv_heads})"
        )
    config_cls = getattr(transformers, ARCHITECTURES[arch][0])
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "max_position_embeddings": MAX_POSITIONS,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **_arch_options(arch, num_layers, hidden_size, num_heads, intermediate_size),
    }
    if arch not in VLM_ARCHITECTURES:
        return config_cls(**text)
    return _vlm_config(arch, config_cls, text, len(tokenizer), hidden_size, num_heads)


def _arch_options(arch: str, num_layers: int, hidden_size: int, num_heads: int, intermediate: int) -> dict:
    """What each family needs beyond the common sizes (small experts, a mix of layer kinds, one head size)."""
    head_dim = hidden_size // num_heads
    experts = {"num_experts_per_tok": 2, "moe_intermediate_size": intermediate // 4}
    dense_layer = [num_layers - 2] if num_layers > 1 else []  # an MoE model's dense MLP layer among the last ones
    options = {
        "gemma2": {"head_dim": head_dim, "sliding_window": MAX_POSITIONS},  # all full attention, one head size
        "qwen3": {"head_dim": head_dim},
        "gemma": {"head_dim": head_dim},
        "gemma3": {"head_dim": head_dim, "sliding_window": MAX_POSITIONS},
        "gpt2": {"n_inner": intermediate},
        "lfm2": {"full_attn_idxs": list(range(1, num_layers, 2))},  # conv and attention layers alternate
        "nemotron_h": {
            "layers_block_type": [("mamba", "mlp", "attention", "moe")[i % 4] for i in range(num_layers)],
            "head_dim": head_dim,
            "mamba_num_heads": num_heads,
            "mamba_head_dim": head_dim,
            "ssm_state_size": 8,
            "n_groups": 1,
            "n_routed_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": intermediate // 4,
            "moe_shared_expert_intermediate_size": intermediate // 4,
        },
        "qwen2_moe": {**experts, "num_experts": 4, "shared_expert_intermediate_size": intermediate // 2,
                      "mlp_only_layers": dense_layer},
        "qwen3_moe": {**experts, "num_experts": 4, "head_dim": head_dim, "mlp_only_layers": dense_layer},
        "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": head_dim},
        "gpt_oss": {"num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": head_dim,
                    "layer_types": ["full_attention"] * num_layers},
        "gemma4": {
            "head_dim": head_dim,
            "global_head_dim": head_dim,
            "sliding_window": MAX_POSITIONS,
            "hidden_size_per_layer_input": 8,
            "enable_moe_block": True,
            "num_experts": 4,
            "top_k_experts": 2,
            "moe_intermediate_size": intermediate // 4,
        },
    }  # fmt: skip
    return options.get(arch.removesuffix("_text"), {})


def _vlm_config(arch: str, config_cls, text: dict, n_tokens: int, hidden_size: int, num_heads: int):
    """A vision-language config around `text`; the image token ids lie past the tokenizer's vocabulary, so text
    never contains one."""
    text = {**text, "vocab_size": n_tokens + 8}
    if arch == "gemma4":
        text["vocab_size_per_layer_input"] = text["vocab_size"]
    vision = {
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": 2,
        "num_attention_heads": num_heads,
    }
    if arch == "gemma3":
        vision.update(image_size=32, patch_size=8)
        ids = {"image_token_index": n_tokens, "boi_token_index": n_tokens + 1, "eoi_token_index": n_tokens + 2}
        return config_cls(text_config=text, vision_config=vision, mm_tokens_per_image=4, **ids)
    vision.update(num_key_value_heads=num_heads, head_dim=hidden_size // num_heads, use_clipped_linears=True)
    names = ("image_token_id", "boi_token_id", "eoi_token_id", "video_token_id", "boa_token_id", "eoa_token_index",
             "audio_token_id")  # fmt: skip
    ids = {name: n_tokens + k for k, name in enumerate(names)}
    return config_cls(text_config=text, vision_config=vision, audio_config=None, **ids)


def build_tiny_model(
    output_dir: str | Path,
    *,
    seed: int = 0,
    arch: str = "llama",
    num_layers: int = 4,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vocab_size: int = 512,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Train a tokenizer, initialise a randomly weighted `arch` model with `seed`, save both to `output_dir`.

    `corpus` is the tokenizer's training text; the default is `toy_corpus()` (toy problems of every flaw kind,
    independent of `seed`, so models of different seeds share a tokenizer). To cover GSM8K's wording as well, pass
    e.g. ``[*toy_corpus(), *(q + a for q, a in zip(gsm["question"], gsm["answer"]))]``. The same arguments give
    byte-identical files. Returns the folder.
    """
    output_dir = Path(output_dir)
    tokenizer = train_tokenizer(toy_corpus() if corpus is None else corpus, vocab_size=vocab_size)
    config = tiny_config(
        arch,
        tokenizer,
        num_layers=num_layers,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, ARCHITECTURES[arch][1])(config)
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


@functools.cache
def cached_tiny_model(*, seed: int = 0, arch: str = "llama", **sizes: int) -> Path:
    """`build_tiny_model` built once per process and argument set, in a temporary folder removed at exit.

    For tests and examples that need a model folder and do not care where it lives. `sizes` are the integer
    keyword arguments of `build_tiny_model` (num_layers, hidden_size, ...). Treat the folder as read-only.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"resofilter-tiny-{arch}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return build_tiny_model(folder, seed=seed, arch=arch, **sizes)
