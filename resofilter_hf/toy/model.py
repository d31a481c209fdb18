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
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

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

# name -> (config class, model class); each model has `model.layers.{i}.mlp.up_proj`
ARCHITECTURES = {
    "llama": (LlamaConfig, LlamaForCausalLM),  # no attention biases, untied embeddings
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),  # q/k/v biases
    "gemma2": (Gemma2Config, Gemma2ForCausalLM),  # the paper's family: extra norms, soft-capping, tied embeddings
}

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
    config_cls, _ = ARCHITECTURES[arch]
    kwargs = {}
    if arch == "gemma2":  # keep every layer full attention and the head size consistent with the others
        kwargs = {"head_dim": hidden_size // num_heads, "sliding_window": MAX_POSITIONS}
    return config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )


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
    model = ARCHITECTURES[arch][1](config)
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
