"""Per-sample mean token loss without materialising the (batch, seq, vocab) logits.

The backbone runs once; the LM head projects only loss positions, a chunk of tokens at a time, and forms the
gradient with respect to the hidden states right there, so at most one chunk of logits (in fp32, fp64 for fp64
models) lives at once and backward needs no logits at all. Each sample's loss is the mean over its own loss tokens, so backpropagating their sum gives every
sample its own gradient (the usual batch token-mean would weight samples by their share of the tokens).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .deltas import compute_dtype
from .targets import unwrap_model


@dataclass
class LMHead:
    """The pieces of a causal LM that turn hidden states into next-token log-probabilities."""

    backbone: nn.Module
    head: nn.Module
    softcap: float | None = None
    logit_scale: float = 1.0

    @classmethod
    def of(cls, model: nn.Module) -> "LMHead":
        base = unwrap_model(model)
        head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
        backbone = getattr(base, getattr(base, "base_model_prefix", "model"), None)
        if head is None or backbone is None or backbone is base:
            raise TypeError(
                f"{type(base).__name__} is not a causal LM with a backbone and an output embedding "
                "(e.g. a *ForCausalLM model); it cannot be scored."
            )
        config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
        scale = getattr(config, "logit_scale", None)
        return cls(backbone, head, getattr(config, "final_logit_softcapping", None), 1.0 if scale is None else scale)

    def token_nll(self, hidden: torch.Tensor, labels: torch.Tensor, chunk_mb: int) -> torch.Tensor:
        """Negative log-likelihood of `labels` [N] given `hidden` [N, H], a chunk of tokens at a time."""
        vocab = self.head.weight.shape[0]
        chunk = max(1, (chunk_mb * 2**20) // (vocab * 4 * 3))
        pieces = [
            _ChunkedNLL.apply(hidden[i : i + chunk], labels[i : i + chunk], self) for i in range(0, len(hidden), chunk)
        ]
        return torch.cat(pieces) if pieces else hidden.new_zeros(0)

    def per_sample_loss(
        self, batch: dict[str, torch.Tensor], chunk_mb: int = 256
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss per sample [B], loss-token count per sample [B]); samples without loss tokens get loss 0."""
        kwargs = {k: batch[k] for k in ("attention_mask", "position_ids") if k in batch}
        hidden = self.backbone(input_ids=batch["input_ids"], use_cache=False, **kwargs).last_hidden_state
        labels = batch["labels"][:, 1:].to(hidden.device)
        mask = labels != -100
        sample = mask.nonzero()[:, 0]
        nll = self.token_nll(hidden[:, :-1][mask], labels[mask], chunk_mb)
        counts = mask.sum(1)
        sums = torch.zeros(labels.shape[0], dtype=nll.dtype, device=nll.device).index_add(0, sample, nll)
        return sums / counts.clamp(min=1).to(sums.dtype), counts


class _ChunkedNLL(torch.autograd.Function):
    """nll = logsumexp(z) - z[label] for z = softcap(scale * h W^T + b), with d nll/dh formed in the forward.

    The gradient of a token's nll with respect to its hidden state is (softmax(z) - onehot) dz/dlogits W: an [N, H]
    tensor, as small as the hidden states. Forming it while the logits are at hand saves keeping them (or
    recomputing them) for backward. The head's own weights get no gradient: they are never a scoring target.
    """

    @staticmethod
    def forward(ctx, hidden, labels, head: "LMHead"):
        weight, bias = head.head.weight, head.head.bias
        logits = F.linear(hidden, weight, bias).to(compute_dtype(hidden.dtype))
        if head.logit_scale != 1.0:
            logits = logits * head.logit_scale
        if head.softcap is not None:
            logits = torch.tanh(logits / head.softcap) * head.softcap
        if head.softcap is not None and hidden.requires_grad:
            softcap_slope = 1 - (logits / head.softcap) ** 2  # d softcap(x) / dx, before logits are overwritten
        log_probs = torch.log_softmax(logits, dim=-1)
        del logits
        nll = -log_probs.gather(-1, labels[:, None]).squeeze(-1)
        if hidden.requires_grad:
            d_logits = log_probs.exp_()  # softmax, in place
            d_logits.scatter_add_(-1, labels[:, None], -torch.ones_like(nll[:, None]))
            if head.softcap is not None:
                d_logits *= softcap_slope
            if head.logit_scale != 1.0:
                d_logits *= head.logit_scale
            ctx.save_for_backward(d_logits.to(weight.dtype) @ weight)
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        (d_hidden,) = ctx.saved_tensors
        return d_hidden * grad_nll[:, None].to(d_hidden.dtype), None, None
