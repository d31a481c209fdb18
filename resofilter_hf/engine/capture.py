"""Hooks that record, for each target linear, its input x and the gradient dL/dy of its output.

For y = x W^T the per-sample gradient is G_i = sum_t dy_{i,t}^T x_{i,t}, so these two tensors are all a score
needs. Hooks sit on the modules, which keeps them working where `torch.func` does not (SDPA with an attention
mask, gradient checkpointing, TRL's fused LM head). Nothing here changes the model's outputs.

Fused 3-D expert weights (`Target.per_sample_autograd`) have no module call of their own to hook: `backward`
gives them each sample's exact gradient by one autograd pass per sample through the same graph (batch size 1 in
effect, for those tensors only), kept as `param_grads` [batch, out, in] of the scored matrix (`Target.matrix`).
"""

from dataclasses import dataclass, field

import torch

from .compat import in_backward
from .targets import Target


@dataclass
class TargetRecord:
    """What one target saw in one forward/backward: inputs and output-gradients of each call."""

    target: Target
    inputs: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)
    output_grads: list[torch.Tensor | None] = field(default_factory=list)
    param_grads: torch.Tensor | None = None  # autograd targets: per-sample gradient of the scored matrix [B, out, in]

    def clear(self) -> None:
        self.inputs.clear()
        self.outputs.clear()
        self.output_grads.clear()
        self.param_grads = None


class GradientCapture:
    """Context manager installing the hooks; `records` holds one `TargetRecord` per target.

    `grad_hooks=True` also registers a tensor hook on each output, so a plain `loss.backward()` (a training step)
    fills `output_grads`. Without it the caller hands the per-sample losses to `backward`, which asks autograd
    for the output gradients directly (no weight gradients at all) and for the autograd targets' own gradients.
    """

    def __init__(self, targets: list[Target], grad_hooks: bool = False):
        self.records = [TargetRecord(t) for t in targets]
        self.grad_hooks = grad_hooks
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> "GradientCapture":
        for record in self.records:
            if not record.target.per_sample_autograd:
                self._handles.append(record.target.module.register_forward_hook(self._forward_hook(record)))
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.clear()

    def clear(self) -> None:
        for record in self.records:
            record.clear()

    def _forward_hook(self, record: TargetRecord):
        def hook(module, args, output):
            # Only calls that build a graph are recorded; under gradient checkpointing the forward runs again
            # inside backward (graph task id != -1), and those recomputations are skipped.
            if in_backward() or not torch.is_grad_enabled() or not output.requires_grad:
                return
            record.inputs.append(args[0].detach())
            record.outputs.append(output)
            if self.grad_hooks:
                slot = len(record.output_grads)
                record.output_grads.append(None)

                def grad_hook(grad, slot=slot):
                    record.output_grads[slot] = grad.detach()

                output.register_hook(grad_hook)

        return hook

    def outputs(self) -> list[torch.Tensor]:
        return [out for record in self.records for out in record.outputs]

    def backward(self, loss: torch.Tensor, has_tokens: torch.Tensor) -> None:
        """From per-sample losses [B] (each a function of its own row only): the output gradients of the hooked
        targets (one backward of the sum) and the per-sample gradients of the autograd targets (one per sample)."""
        autograd = [r for r in self.records if r.target.per_sample_autograd]
        outputs = self.outputs()
        rows = has_tokens.nonzero()[:, 0].tolist()
        for record in autograd:
            matrix = record.target.matrix
            record.param_grads = matrix.new_zeros((len(loss), *matrix.shape))
        params = [r.target.weight for r in autograd]
        for k, i in enumerate(rows if params else []):
            keep = bool(outputs) or k < len(rows) - 1
            grads = torch.autograd.grad(loss[i], params, retain_graph=keep, allow_unused=True)
            for record, grad in zip(autograd, grads):
                if grad is not None:
                    record.param_grads[i] = record.target.as_matrix(grad)
        grads = [None] * len(outputs)
        if rows and outputs:
            grads = torch.autograd.grad(loss[has_tokens].sum(), outputs, allow_unused=True)
        self.set_output_grads(list(grads))
        self.unflatten(len(loss))

    def unflatten(self, batch: int) -> None:
        """Calls that saw the batch's tokens flattened to [batch * T, F] (an MoE block's shared expert, which gets
        `hidden_states.view(-1, H)`) are viewed as [batch, T, F] again, so every sample keeps its own rows."""
        for record in self.records:
            for values in (record.inputs, record.output_grads):
                for k, value in enumerate(values):
                    if value is not None and value.dim() == 2:
                        if value.shape[0] % batch:
                            raise RuntimeError(
                                f"{record.target.name} saw {value.shape[0]} flattened token rows, not a multiple of "
                                f"the batch size {batch}; its per-sample gradients cannot be separated."
                            )
                        values[k] = value.view(batch, -1, value.shape[-1])

    def set_output_grads(self, grads: list[torch.Tensor | None]) -> None:
        """Distribute the result of `torch.autograd.grad(loss, outputs())` back onto the records."""
        it = iter(grads)
        for record in self.records:
            record.output_grads = [None if g is None else g.detach() for _, g in zip(record.outputs, it)]
