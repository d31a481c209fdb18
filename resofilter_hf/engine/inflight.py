"""Scores as a by-product of training: each sample's delta at the step it is trained on.

Hooks on the target linears record x and dL/dy during the real training forward/backward; no extra pass. The
real loss is a token mean over the whole (accumulated, multi-process) batch, scaled by whatever the trainer and
accelerate multiply it by, so sample i's rows of dL/dy are its own mean-loss gradient times a factor c * n_i.
A hook on the per-token log-probabilities of TRL's fused LM head reads that factor off the backward pass itself
(dL/dlog p = -c on each of the sample's n_i loss tokens), so g_i = G_i / sum_t(-dL/dlog p_t) exactly, whatever
the scaling (gradient accumulation, loss scaling, `average_tokens_across_devices`).

What the in-flight score is, and is not:
- the per-sample gradient is taken before gradient clipping (`max_grad_norm` clips the summed batch gradient,
  not a per-sample one) and per micro-batch (gradient accumulation sums samples; each is scored alone);
- the delta is the configured transform (the paper's fresh AdamW by default) applied to that gradient, or with
  `resonance_inflight_state="live"` the step the run's own AdamW would make for that sample alone, from its
  current moments, learning rate and weight decay;
- samples in one batch are scored at the same model state, the one the step's forward saw.
"""

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import torch
from torch import nn
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from .capture import GradientCapture, TargetRecord
from .deltas import AdamState, ScoreSpec, score_records
from .rows import ROW_ID
from .shards import ID, ShardStore
from .targets import Target


INFLIGHT_SCHEMA = pa.schema(
    [
        ("epoch", pa.int64()),
        (ID, pa.int64()),
        ("score", pa.float64()),
        ("step", pa.int64()),
        ("alignment", pa.float64()),
    ]
)
ROW_KEY = "resonance_row_id"  # batch key the collator adds; taken off before the batch reaches the model


class RowIdCollator:
    """Wraps a collator: takes `ROW_ID` off each example and returns the ids as a tensor under `ROW_KEY`."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        if not examples or ROW_ID not in examples[0]:
            return self.collator(examples)
        ids = [example[ROW_ID] for example in examples]
        batch = self.collator([{k: v for k, v in example.items() if k != ROW_ID} for example in examples])
        batch[ROW_KEY] = torch.tensor(ids, dtype=torch.long)
        return batch


def scoring_collator(collator):
    """The collator scoring batches go through: the trainer's own, padded (one row per sample)."""
    collator = collator.collator if isinstance(collator, RowIdCollator) else collator
    if isinstance(collator, DataCollatorForLanguageModeling):
        # Scoring always pads (one row per sample); padding-free training packs, which is a training concern.
        return DataCollatorForLanguageModeling(
            pad_token_id=collator.pad_token_id, pad_to_multiple_of=collator.pad_to_multiple_of
        )
    return collator


def sample_spans(batch: dict, n_samples: int) -> list[tuple[int, int, int]]:
    """(row, start, end) token span of each sample: one per padded row, or one per segment when padding-free."""
    if "cu_seq_lens_q" in batch and batch["input_ids"].shape[0] == 1 and n_samples > 1:
        bounds = batch["cu_seq_lens_q"].tolist()
        return [(0, bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
    length = batch["input_ids"].shape[1]
    return [(row, 0, length) for row in range(batch["input_ids"].shape[0])]


def _per_sample(tensor: torch.Tensor, spans: list[tuple[int, int, int]]) -> torch.Tensor:
    """[rows, T, F] -> [samples, T_max, F], zero-padded (a view when spans are whole rows)."""
    if all(start == 0 and end == tensor.shape[1] for _, start, end in spans) and len(spans) == tensor.shape[0]:
        return tensor
    width = max(end - start for _, start, end in spans)
    out = tensor.new_zeros((len(spans), width, tensor.shape[-1]))
    for k, (row, start, end) in enumerate(spans):
        out[k, : end - start] = tensor[row, start:end]
    return out


@dataclass
class InflightRecorder:
    """Per-epoch in-flight scores: {epoch: {row id: (score, global step, alignment)}}, first occurrence kept.

    The alignment is NaN unless `spec.reference` holds a reference step.
    """

    targets: list[Target]
    spec: ScoreSpec
    epochs: dict[int, dict[int, tuple[float, int, float]]] = field(default_factory=dict)
    _capture: GradientCapture | None = None
    _handle: torch.utils.hooks.RemovableHandle | None = None
    _logprob_grads: list[torch.Tensor | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        fused = [t.tensor_name for t in self.targets if t.per_sample_autograd]
        if fused:
            raise ValueError(
                f"`resonance_when='inflight'` cannot score fused 3-D expert weights ({fused[0]} and "
                f"{len(fused) - 1} more): a training step sums their gradients over the batch, and no hook separates "
                "one sample's share. Score with `resonance_when='before_train'`/`'after_train'`, or set "
                "`resonance_modules` to linear modules (e.g. a shared expert's up_proj)."
            )

    def attach(self, model: nn.Module) -> None:
        """Install the hooks (target linears, and the fused head's log-probs on `model`'s output)."""
        if self._capture is not None:
            return
        self._capture = GradientCapture(self.targets, grad_hooks=True).__enter__()
        self._handle = model.register_forward_hook(self._output_hook)

    def detach(self) -> None:
        if self._capture is not None:
            self._capture.remove()
            self._capture = None
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _output_hook(self, module, args, output) -> None:
        log_probs = getattr(output, "log_probs", None)
        if isinstance(log_probs, torch.Tensor) and log_probs.requires_grad and module.training:
            slot = len(self._logprob_grads)
            self._logprob_grads.append(None)

            def store(grad, slot=slot):
                self._logprob_grads[slot] = grad.detach()

            log_probs.register_hook(store)

    def discard(self) -> None:
        """Forget what the hooks saw (a batch that is not scored)."""
        if self._capture is not None:
            self._capture.clear()
        self._logprob_grads.clear()

    def record_batch(
        self, ids: torch.Tensor, batch: dict, epoch: int, step: int, states: dict[str, AdamState] | None = None
    ) -> None:
        """After the backward of one micro-batch: score its samples and keep the first score of each row."""
        capture = self._capture
        if capture is None:
            raise RuntimeError("the in-flight recorder is not attached")
        records = capture.records
        grads = [g for g in self._logprob_grads if g is not None]
        if not records[0].inputs or not grads or any(g is None for r in records for g in r.output_grads):
            self.discard()
            raise RuntimeError(
                "In-flight scoring saw no gradient at the target modules in this training step. This happens with "
                "reentrant gradient checkpointing (set `gradient_checkpointing_kwargs={'use_reentrant': False}`) "
                "or when the targets are frozen; score with `resonance_when='before_train'` instead."
            )
        logprob_grad = grads[-1]
        capture.unflatten(batch["input_ids"].shape[0])
        spans = sample_spans(batch, len(ids))
        labels = batch["labels"].to(logprob_grad.device)
        weights = []  # sum over the sample's loss tokens of -dL/dlog p = c * n_i
        for row, start, end in spans:
            positions = torch.arange(max(start, 1), end, device=labels.device)
            mask = labels[row, positions] != -100
            weights.append(-logprob_grad[row, positions - 1][mask].double().sum())
        weights = torch.stack(weights)
        valid = weights > 0
        scale = torch.where(valid, 1 / weights.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(weights))
        per_sample = []
        for record in records:
            per_sample.append(
                TargetRecord(
                    record.target,
                    inputs=[_per_sample(x, spans) for x in record.inputs],
                    outputs=record.outputs,
                    output_grads=[
                        _per_sample(g, spans) * scale.to(g.dtype)[:, None, None] for g in record.output_grads
                    ],
                )
            )
        spec = self.spec if states is None else dataclasses.replace(self.spec, states=states)
        out = score_records(per_sample, spec, len(spans))
        scores, alignment = out["score"].tolist(), out.get("alignment")
        alignment = alignment.tolist() if alignment is not None else [float("nan")] * len(scores)
        seen = self.epochs.setdefault(epoch, {})
        for k, row_id in enumerate(ids.tolist()):
            if row_id not in seen:
                ok = bool(valid[k])
                seen[row_id] = (scores[k] if ok else float("nan"), step, alignment[k] if ok else float("nan"))
        self.discard()

    # ---- checkpoints and processes ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {str(e): {str(i): list(v) for i, v in rows.items()} for e, rows in self.epochs.items()}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = {  # states saved before alignment scores existed have (score, step) pairs
            int(e): {
                int(i): (float(v[0]), int(v[1]), float(v[2]) if len(v) > 2 else float("nan")) for i, v in rows.items()
            }
            for e, rows in state.items()
        }

    def merge_table(self, columns: dict[str, list]) -> None:
        """Fold in scores given as columns (epoch, id, score, step, alignment), e.g. read from other processes'
        shards."""
        rows: dict[int, dict[int, tuple[float, int, float]]] = {}
        fields = zip(columns["epoch"], columns["id"], columns["score"], columns["step"], columns["alignment"])
        for epoch, row_id, score, step, alignment in fields:
            rows.setdefault(int(epoch), {})
            previous = rows[int(epoch)].get(int(row_id))
            if previous is None or step < previous[1]:
                rows[int(epoch)][int(row_id)] = (float(score), int(step), float(alignment))
        self.merge([rows])

    def gather(self, folder: Path, process_index: int, num_processes: int, barrier: Callable[[], None]) -> None:
        """Every process's scores into this recorder: each writes one shard into the shared `folder`, then, after
        a barrier, reads them all (no result goes over the wire); the main process removes the folder after."""
        store = ShardStore(folder, schema=INFLIGHT_SCHEMA)
        rows = [(e, i, *v) for e, scores in self.epochs.items() for i, v in scores.items()]
        names = [f.name for f in INFLIGHT_SCHEMA]
        columns = {name: list(values) for name, values in zip(names, zip(*rows))} if rows else {}
        store.write(f"rank{process_index:05d}", {n: columns.get(n, []) for n in names}, "", process_index)
        barrier()
        self.merge_table(store.read([f"rank{r:05d}" for r in range(num_processes)]).to_pydict())
        barrier()
        if process_index == 0:
            shutil.rmtree(folder, ignore_errors=True)

    def merge(self, others: list[dict[int, dict[int, tuple[float, int, float]]]]) -> None:
        """Fold in other processes' scores; a row seen twice in an epoch keeps the earliest step."""
        for other in others:
            for epoch, rows in other.items():
                mine = self.epochs.setdefault(epoch, {})
                for row_id, value in rows.items():
                    if row_id not in mine or value[1] < mine[row_id][1]:
                        mine[row_id] = value


def live_adam_states(optimizer, targets: list[Target]) -> dict[str, AdamState]:
    """The run's own AdamW moments, learning rate and hyper-parameters for each target weight."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
    if not isinstance(inner, torch.optim.AdamW):
        raise ValueError(
            f"`resonance_inflight_state='live'` needs a torch.optim.AdamW (`optim='adamw_torch'`), got "
            f"{type(inner).__name__}. Use `resonance_inflight_state='fresh'`."
        )
    groups = {id(p): g for g in inner.param_groups for p in g["params"]}
    states = {}
    for target in targets:
        group = groups.get(id(target.weight))
        if group is None:
            raise ValueError(f"{target.name} is not trained by the optimizer; it cannot be scored with its state.")
        state = inner.state.get(target.weight, {})
        exp_avg = state.get("exp_avg")
        states[target.name] = AdamState(  # in the target's [out, in] matrix view, as the deltas are formed
            exp_avg_sq=target.as_matrix(state.get("exp_avg_sq", torch.zeros_like(target.weight))),
            exp_avg=None if exp_avg is None else target.as_matrix(exp_avg),
            step=int(state["step"]) if "step" in state else 0,
            lr=float(group["lr"]),
            weight_decay=float(group["weight_decay"]),
            betas=tuple(group["betas"]),
            eps=float(group["eps"]),
        )
    return states
