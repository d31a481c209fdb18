"""Digests of everything a score depends on, so a scoring folder is reused only for the very same inputs.

Weights and buffers are hashed in full (every byte of every tensor, streamed a chunk at a time, so no second
copy of the model is made); the model and adapter configs, the tokenizer and its chat template, the targets and
the settings are hashed as canonical JSON; rows and prepared tokens as Arrow IPC bytes.
"""

import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import torch
from torch import nn


CHUNK_BYTES = 64 * 2**20  # host copies of device tensors are made this many bytes at a time


def _tensor_sha256(tensor: torch.Tensor) -> str:
    h = hashlib.sha256(f"{tuple(tensor.shape)}:{tensor.dtype}:".encode())
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return h.hexdigest()
    raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
    for start in range(0, raw.numel(), CHUNK_BYTES):
        h.update(raw[start : start + CHUNK_BYTES].cpu().numpy().data)  # hashlib releases the GIL on big chunks
    return h.hexdigest()


def tensor_digest(model: nn.Module, threads: int | None = None) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every parameter and buffer (persistent or not): one
    sha256 per tensor, computed on `threads` threads (default: up to 8), then one over the named digests."""
    named, seen = [], set()
    for kind, tensors in (("p", model.named_parameters()), ("b", model.named_buffers())):
        for name, tensor in tensors:
            if id(tensor) not in seen:  # a tied weight counts once
                seen.add(id(tensor))
                named.append((f"{kind}:{name}", tensor))
    threads = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        digests = list(pool.map(_tensor_sha256, [t for _, t in named]))
    return hashlib.sha256("\n".join(f"{n}={d}" for (n, _), d in zip(named, digests)).encode()).hexdigest()


_VOLATILE_CONFIG_KEYS = ("_name_or_path", "_commit_hash", "transformers_version", "_attn_implementation_autoset")


def config_digest(model: nn.Module) -> str:
    """The model config (minus where it was loaded from) and any PEFT adapter configs."""
    configs = []
    for module in (
        model,
        getattr(model, "base_model", None),
        getattr(getattr(model, "base_model", None), "model", None),
    ):
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            configs.append({k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS})
    peft = getattr(model, "peft_config", None)
    if isinstance(peft, dict):
        configs.append({name: c.to_dict() if hasattr(c, "to_dict") else str(c) for name, c in peft.items()})
    return json_digest(configs)


def tokenizer_digest(processing_class: Any) -> str:
    """The full tokenizer (its serialized vocabulary, merges and normalizers when fast), special tokens and
    chat template."""
    if processing_class is None:
        return json_digest(None)
    tokenizer = getattr(processing_class, "tokenizer", processing_class)  # processors wrap a tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    parts = {
        "class": type(tokenizer).__name__,
        "special": getattr(tokenizer, "special_tokens_map", None),
        "padding_side": getattr(tokenizer, "padding_side", None),
        "chat_template": getattr(processing_class, "chat_template", None) or getattr(tokenizer, "chat_template", None),
        "body": hashlib.sha256(body.encode()).hexdigest(),
    }
    return json_digest(parts)


def json_digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def table_digest(batches: Iterable[pa.Table | pa.RecordBatch]) -> str:
    """sha256 of Arrow data, batch by batch, as IPC stream bytes (the same rows in the same layout, same digest)."""
    h = hashlib.sha256()
    for batch in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write(batch)
        h.update(sink.getvalue())
    return h.hexdigest()


def combine(*parts: str) -> str:
    """A short folder name from several digests."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]
