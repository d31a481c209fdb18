"""The paper's literal loop, kept as a slow oracle for the batched engine.

For each sample alone: reload theta, one step of a fresh `torch.optim.AdamW` (or SGD) at batch size 1 on that
sample's mean response-token loss, diff the target weights, reduce. It shares nothing with the engine but the
tokenized rows: its own loss (from the model's full logits), real autograd on every trainable parameter, a real
optimizer step. Use it to check the engine, never to score a dataset.

A scored tensor may be part of a parameter (`TensorPart`): the up half of a fused [gate; up] weight, every
expert's up rows of a 3-D expert weight, a weight stored [in, out]. The part is cut out of the real weight
difference after the step, so the reference stays independent of how the engine locates it.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TensorPart:
    """`delta[index]` of parameter `param`, after swapping its last two axes when `transposed`."""

    param: str
    index: tuple = ()
    transposed: bool = False

    def of(self, delta: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            delta = delta.transpose(-1, -2)
        return delta[self.index]


def _reduce(delta: torch.Tensor, metric: str) -> float:
    d = delta.double().flatten()
    if metric == "mean_abs":
        return d.abs().mean().item()
    if metric == "l2":
        return d.norm().item()
    if metric == "max_abs":
        return d.abs().max().item()
    if metric == "std":
        return d.std().item()
    raise ValueError(f"unknown metric {metric!r}")


def literal_loop_scores(
    model: nn.Module,
    rows: Iterable[dict],
    target_params: list[str | TensorPart],
    *,
    optimizer: str = "adamw",
    lr: float = 1e-5,
    weight_decay: float = 0.01,
    eps: float = 1e-8,
    betas: tuple[float, float] = (0.9, 0.999),
    metric: str = "mean_abs",
) -> list[float]:
    """Score each row ({"input_ids": [...], "labels": [...]}) by the literal one-step loop.

    `target_params` are parameter names (as in `model.named_parameters()`) or `TensorPart`s of them, each one
    scored tensor, reduced on its own and averaged (as the paper averages its three up-projections); every
    parameter that requires grad is
    trained, as in the paper's full fine-tuning step (for a PEFT model: the adapter). The model's weights, mode and
    gradients are restored afterwards.
    """
    params = dict(model.named_parameters())
    parts = [p if isinstance(p, TensorPart) else TensorPart(p) for p in target_params]
    missing = [part.param for part in parts if part.param not in params]
    if missing:
        raise KeyError(f"target parameters not in the model: {missing}")
    trainable = [p for p in params.values() if p.requires_grad]
    theta = {name: p.detach().clone() for name, p in params.items()}
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()  # dropout off: a reproducible step (the engine scores in eval mode too)
    scores = []
    try:
        for row in rows:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(theta[name])
            if optimizer == "adamw":
                opt = torch.optim.AdamW(trainable, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
            elif optimizer == "sgd":
                opt = torch.optim.SGD(trainable, lr=lr, weight_decay=weight_decay)
            else:
                raise ValueError(f"the oracle knows 'adamw' and 'sgd', not {optimizer!r}")
            opt.zero_grad(set_to_none=True)
            input_ids = torch.tensor([row["input_ids"]], device=device)
            labels = torch.tensor(row["labels"], device=device)
            logits = model(input_ids=input_ids, use_cache=False).logits[0, :-1]
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()
            loss = F.cross_entropy(logits, labels[1:], ignore_index=-100)
            loss.backward()
            opt.step()
            with torch.no_grad():
                per_tensor = [_reduce(part.of(params[part.param] - theta[part.param]), metric) for part in parts]
            scores.append(sum(per_tensor) / len(per_tensor))
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(theta[name])
                p.grad = None
        model.train(was_training)
    return scores
