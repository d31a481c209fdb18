"""A GGUF checkpoint as a plain, trainable model: `model_init_kwargs={"gguf_file": ...}` with a model name or folder.

TRL builds a model named by a string through `AutoConfig` (which cannot read a GGUF file) and transformers loads
a GGUF file as a quantized model, which `Trainer` refuses to fine-tune and `save_pretrained` refuses to write,
although its weights are already dequantized. `load_gguf` loads the file as transformers does, then rebuilds the
same architecture from its config without the quantization entry and loads the weights into it: an ordinary model
(float32 unless `dtype` says otherwise, as TRL's default is), with the tokenizer and chat template the file holds.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch


GGUF_KEY = "gguf_file"


def gguf_file_of(model: Any, model_init_kwargs: Any) -> str | None:
    """The GGUF file to load `model` (a name or folder) from, or None: a model object, or no `gguf_file` key."""
    if not isinstance(model, str) or not isinstance(model_init_kwargs, dict):
        return None
    return model_init_kwargs.get(GGUF_KEY)


def load_gguf(model_id: str, gguf_file: str, **model_init_kwargs: Any):
    """(model, tokenizer) from `gguf_file` in `model_id` (a local folder or a Hub repository).

    `model_init_kwargs` go to `from_pretrained` as TRL passes them (dtype as a string or a torch dtype, default
    float32; revision, attn_implementation, ...). The model is a plain instance of the file's architecture, in
    eval mode, with `config._name_or_path` set to `model_id`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {k: v for k, v in model_init_kwargs.items() if v is not None}
    if "quantization_config" in kwargs:
        raise ValueError(
            f"model_init_kwargs: `{GGUF_KEY}` with `quantization_config`: a GGUF file is loaded dequantized; "
            "load it without `quantization_config`, or quantize a saved copy"
        )
    dtype = kwargs.get("dtype", "float32")  # TRL's default for a model it loads by name
    if isinstance(dtype, str) and dtype not in ("auto", "bfloat16", "float16", "float32"):
        raise ValueError(f"model_init_kwargs: dtype {dtype!r}; use 'auto', 'bfloat16', 'float16' or 'float32'")
    kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    kwargs.setdefault("device_map", None)  # built on the CPU; the trainer places it
    loaded = AutoModelForCausalLM.from_pretrained(model_id, gguf_file=gguf_file, **kwargs)
    model = _dequantized(loaded, model_id)
    tokenizer_kwargs = {k: kwargs[k] for k in ("revision", "trust_remote_code", "cache_dir") if k in kwargs}
    tokenizer = AutoTokenizer.from_pretrained(model_id, gguf_file=gguf_file, **tokenizer_kwargs)
    return model, tokenizer


def _dequantized(loaded, model_id: str):
    """The same architecture and weights as `loaded`, without its GGUF quantization entry."""
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = model_id
    with torch.device(next(loaded.parameters()).device):
        model = type(loaded)._from_config(config, dtype=loaded.dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(loaded.generation_config)
    return model.eval()


@contextlib.contextmanager
def gguf_loaded(model: Any, args: Any, processing_class: Any) -> Iterator[tuple[Any, Any]]:
    """(model, processing_class) for a trainer's `__init__`: loaded from the GGUF file `args.model_init_kwargs`
    names when `model` is a string and they name one (the caller's `processing_class` kept if given), else both
    as they are. Inside the block a GGUF load hides `args.model_init_kwargs` (they were used: TRL, given a model,
    would log that they are ignored); they are restored afterwards."""
    kwargs = args.model_init_kwargs
    gguf_file = gguf_file_of(model, kwargs)
    if gguf_file is None:
        yield model, processing_class
        return
    loaded, tokenizer = load_gguf(model, gguf_file, **{k: v for k, v in kwargs.items() if k != GGUF_KEY})
    args.model_init_kwargs = None
    try:
        yield loaded, processing_class if processing_class is not None else tokenizer
    finally:
        args.model_init_kwargs = kwargs
