"""From per-sample gradients to per-sample scores: the optimizer's one-step delta and its reductions.

The delta of one optimizer step has a closed form. For a fresh AdamW, bias correction
gives m_hat = g and v_hat = g^2, so dW = -lr g/(|g|+eps) - lr wd W, exactly what `torch.optim.AdamW` does on
its first step. The score is a statistic of dW per target tensor, averaged over tensors (the paper averages the
mean |dW| of three up-projections). Gradients and deltas are formed in fp32 (fp64 for fp64 models), chunk by
chunk, and every sum is accumulated in fp64: scores differ across samples only in the 4th to 6th digit.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from .capture import TargetRecord


@dataclass(frozen=True)
class StepTransform:
    """The weight delta one optimizer step would make, from a gradient `g` and the weight `w`."""

    optimizer: str = "adamw"  # "adamw" (fresh state) | "sgd" | "adamw_state"
    lr: float = 1e-5
    weight_decay: float = 0.01
    eps: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)

    def delta(self, g: torch.Tensor, w: torch.Tensor, state: "AdamState | None" = None, rows=None) -> torch.Tensor:
        lr, wd = self.lr, self.weight_decay
        if self.optimizer == "sgd":
            # torch.optim.SGD with weight_decay: g + wd w, then -lr times it
            return (g + wd * w).mul_(-lr)
        if self.optimizer == "adamw":
            # fresh AdamW, step 1: m_hat = g, v_hat = g^2, decoupled decay
            return (g / (g.abs() + self.eps)).add_(w, alpha=wd).mul_(-lr)
        if state is None:
            raise ValueError("`adamw_state` needs the optimizer moments (an AdamState) for each target.")
        return state.delta(g, w, self, rows)


@dataclass
class AdamState:
    """AdamW moments of one target weight: the step that `g` alone would take from them.

    `exp_avg` may be None (zero first moment). `step` counts steps already taken; `step=None` means a settled
    state (bias corrections of 1). `lr`, `weight_decay`, `betas` and `eps` override the transform's (a live
    optimizer's param group and scheduler).
    """

    exp_avg_sq: torch.Tensor
    exp_avg: torch.Tensor | None = None
    step: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None

    def delta(self, g: torch.Tensor, w: torch.Tensor, transform: StepTransform, rows=None) -> torch.Tensor:
        beta1, beta2 = transform.betas if self.betas is None else self.betas
        lr = transform.lr if self.lr is None else self.lr
        wd = transform.weight_decay if self.weight_decay is None else self.weight_decay
        eps = transform.eps if self.eps is None else self.eps
        rows = slice(None) if rows is None else rows
        m = g * (1 - beta1)
        if self.exp_avg is not None:
            m = m.add_(self.exp_avg[rows].to(g.dtype), alpha=beta1)
        v = (g * g).mul_(1 - beta2).add_(self.exp_avg_sq[rows].to(g.dtype), alpha=beta2)
        if self.step is None:
            bias1 = bias2 = 1.0
        else:
            bias1, bias2 = 1 - beta1 ** (self.step + 1), 1 - beta2 ** (self.step + 1)
        denom = v.sqrt_().div_(math.sqrt(bias2)).add_(eps)
        return (m / denom).mul_(-lr / bias1).add_(w, alpha=-lr * wd)


@dataclass
class DeltaStats:
    """Per-sample running sums over the entries of one metric tensor (all fp64, shape [batch])."""

    batch: int
    device: torch.device
    count: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)

    def _acc(self, key: str, value: torch.Tensor, reduce: str = "sum") -> None:
        if key not in self.sums:
            self.sums[key] = value
        elif reduce == "max":
            self.sums[key] = torch.maximum(self.sums[key], value)
        else:
            self.sums[key] = self.sums[key] + value

    def add(
        self,
        d: torch.Tensor,
        g: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
        eps: float = 0.0,
        reference: torch.Tensor | None = None,
    ) -> None:
        """Fold in one chunk: `d`, `g` are [batch, rows, cols]; `w` and `reference` (R's rows) are [rows, cols]."""
        flat = d.flatten(1)
        self.count += flat.shape[1]
        a = flat.abs()
        self._acc("abs", a.sum(1, dtype=torch.float64))
        self._acc("sq", (flat * flat).sum(1, dtype=torch.float64))
        self._acc("sum", flat.sum(1, dtype=torch.float64))
        self._acc("max", a.amax(1).double(), reduce="max")
        if g is not None:
            gf = g.flatten(1)
            self._acc("g_sq", (gf * gf).sum(1, dtype=torch.float64))
            self._acc("below_eps", (gf.abs() < eps).sum(1, dtype=torch.float64))
        if w is not None:
            self._acc("toward_zero", ((d * w) < 0).flatten(1).sum(1, dtype=torch.float64))
        if reference is not None:
            self._acc("dot", (flat * reference.to(flat.dtype).flatten()).sum(1, dtype=torch.float64))

    def metric(self, name: str) -> torch.Tensor:
        n = self.count
        if name == "mean_abs":
            return self.sums["abs"] / n
        if name == "l2":
            return self.sums["sq"].sqrt()
        if name == "max_abs":
            return self.sums["max"]
        if name == "std":
            var = (self.sums["sq"] - self.sums["sum"] ** 2 / n) / max(n - 1, 1)
            return var.clamp_min(0).sqrt()
        raise ValueError(f"unknown metric {name!r}")


def rows_per_chunk(batch: int, cols: int, element_size: int, budget_mb: int, temporaries: int = 4) -> int:
    return max(1, (budget_mb * 2**20) // max(1, batch * cols * element_size * temporaries))


def row_chunks(n_rows: int, batch: int, cols: int, dtype: torch.dtype, budget_mb: int) -> Iterator[slice]:
    """Slices of output rows such that `batch` per-sample [rows, cols] blocks (and temporaries) fit the budget."""
    step = rows_per_chunk(batch, cols, torch.finfo(dtype).bits // 8, budget_mb)
    for r0 in range(0, n_rows, step):
        yield slice(r0, min(r0 + step, n_rows))


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 stays fp64; everything else (bf16, fp16, fp32) is reduced in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def stack_calls(record: TargetRecord, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, T, in] and dy [B, T, out] over every call of the module (a per-sample gradient sums over calls).

    dy keeps only the target's scored output rows (`Target.rows`: a fused projection's up part). A call whose
    output got no gradient (nothing downstream of it had a loss) contributes nothing.
    """
    pairs = [(x, g) for x, g in zip(record.inputs, record.output_grads) if g is not None]
    if not pairs:  # zero-length time axis: the per-sample gradients come out as zeros
        batch = record.inputs[0].shape[0]
        out_features, in_features = record.target.matrix.shape
        zeros = record.target.weight.new_zeros
        return zeros((batch, 0, in_features), dtype=dtype), zeros((batch, 0, out_features), dtype=dtype)
    rows = record.target.rows
    x = torch.cat([x.to(dtype) for x, _ in pairs], dim=1)
    dy = torch.cat([(g if rows is None else g[..., rows]).to(dtype) for _, g in pairs], dim=1)
    return x, dy


def gradient_chunks(record: TargetRecord, dtype: torch.dtype, budget_mb: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """The per-sample gradients of the target's [out, in] matrix (`Target.matrix`), a chunk of output rows at a
    time: (rows, G[:, rows] of shape [batch, rows, in]). Formed from hooked inputs and output-gradients,
    G[i] = sum_t dy[i,t]^T x[i,t], or read off autograd's per-sample gradients for the targets hooks cannot
    separate (fused 3-D experts). Every per-sample pass over a target goes through here."""
    out_features, in_features = record.target.matrix.shape
    if record.param_grads is not None:
        grads = record.param_grads
        for rows in row_chunks(out_features, grads.shape[0], in_features, dtype, budget_mb):
            yield rows, grads[:, rows].to(dtype)
        return
    x, dy = stack_calls(record, dtype)
    for rows in row_chunks(out_features, x.shape[0], in_features, dtype, budget_mb):
        yield rows, torch.bmm(dy[:, :, rows].transpose(1, 2), x)


def per_sample_gradient(record: TargetRecord, dtype: torch.dtype, rows: slice = slice(None)) -> torch.Tensor:
    """The per-sample gradients of the target's matrix, output rows `rows`: [batch, rows, in] (small targets
    and tests: the whole matrix is formed)."""
    return torch.cat([g for _, g in gradient_chunks(record, dtype, 2**20)], dim=1)[:, rows]


@dataclass(frozen=True)
class ReferenceStep:
    """The mean step R of a reference set, per target tensor, that alignment scores are cosines against.

    `steps` maps target names to R (the target matrix's shape, compute dtype); `norm_sq` is ||R||^2 (fp64) over
    all targets; `n_rows` the reference rows R averages over; `fingerprint` identifies those rows and the transform.
    """

    steps: dict[str, torch.Tensor]
    n_rows: int
    fingerprint: str = ""
    nonfinite: tuple[int, ...] = ()  # positions of the rows left out for a non-finite loss or step
    norm_sq: float = field(init=False)

    def __post_init__(self):
        total = sum(float((r.double() * r.double()).sum()) for r in self.steps.values())
        object.__setattr__(self, "norm_sq", total)


@dataclass
class ScoreSpec:
    """Everything that turns captured records into scores."""

    transform: StepTransform
    metric: str = "mean_abs"
    anatomy: bool = False
    lora_delta: str = "adapter"  # "adapter" | "effective"
    chunk_mb: int = 256
    states: dict[str, AdamState] | None = None  # target name -> moments (adamw_state)
    reference: ReferenceStep | None = None  # mean step of a reference set -> an "alignment" score


def step_chunks(
    record: TargetRecord, spec: ScoreSpec, dtype: torch.dtype
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(rows, g, w, d) a chunk of output rows at a time: per-sample gradients, the weight's rows, and the step
    `spec.transform` makes from them ([batch, rows, in], [rows, in], [batch, rows, in])."""
    w_full = record.target.matrix
    state = spec.states.get(record.target.name) if spec.states else None
    for rows, g in gradient_chunks(record, dtype, spec.chunk_mb):
        w = w_full[rows].to(dtype)
        yield rows, g, w, spec.transform.delta(g, w, state, rows)


def _target_stats(record: TargetRecord, spec: ScoreSpec, dtype: torch.dtype, batch: int) -> DeltaStats:
    stats = DeltaStats(batch, record.target.weight.device)
    reference = spec.reference.steps[record.target.name] if spec.reference is not None else None
    for rows, g, w, d in step_chunks(record, spec, dtype):
        r = reference[rows] if reference is not None else None
        stats.add(d, g if spec.anatomy else None, w if spec.anatomy else None, spec.transform.eps, r)
    return stats


def _whole_step(record: TargetRecord, spec: ScoreSpec, dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([d for _, _, _, d in step_chunks(record, spec, dtype)], dim=1)


def _effective_lora_stats(a_rec: TargetRecord, b_rec: TargetRecord, spec: ScoreSpec, dtype, batch) -> DeltaStats:
    """Metric over s*(dB A + B dA + dB dA) = s*(dB (A + dA) + B dA), chunked over output rows."""
    a = a_rec.target.matrix.to(dtype)
    b = b_rec.target.matrix.to(dtype)
    d_a, d_b = _whole_step(a_rec, spec, dtype), _whole_step(b_rec, spec, dtype)  # LoRA factors are small
    a_new = a.unsqueeze(0) + d_a
    s = b_rec.target.scaling
    stats = DeltaStats(batch, a.device)
    for rows in row_chunks(b.shape[0], batch, a.shape[1], dtype, spec.chunk_mb):
        d_w = torch.bmm(d_b[:, rows], a_new).add_(torch.matmul(b[rows], d_a)).mul_(s)
        stats.add(d_w)
    return stats


def _alignment(stats: list[DeltaStats], reference: ReferenceStep) -> torch.Tensor:
    """cos(d_i, R) over all target tensors: fp64 sums of <d_i, R> and ||d_i||^2 from the same chunks."""
    dot = sum(s.sums["dot"] for s in stats)
    norm = (sum(s.sums["sq"] for s in stats) * reference.norm_sq).sqrt()
    return torch.where(norm > 0, dot / norm.clamp_min(torch.finfo(torch.float64).tiny), torch.nan)


def score_records(records: list[TargetRecord], spec: ScoreSpec, batch: int) -> dict[str, torch.Tensor]:
    """Per-sample score (and anatomy, alignment) from one batch's records: {"score": [B] fp64, ...}."""
    dtype = compute_dtype(records[0].target.weight.dtype)
    effective = spec.lora_delta == "effective" and records[0].target.role != "weight"
    per_target = spec.anatomy or spec.reference is not None or not effective
    target_stats = [_target_stats(r, spec, dtype, batch) for r in records] if per_target else []
    if effective:
        by_group: dict[str, dict[str, TargetRecord]] = {}
        for record in records:
            by_group.setdefault(record.target.group, {})[record.target.role] = record
        metric_stats = [_effective_lora_stats(p["lora_A"], p["lora_B"], spec, dtype, batch) for p in by_group.values()]
    else:
        metric_stats = target_stats
    out = {"score": torch.stack([s.metric(spec.metric) for s in metric_stats]).mean(0)}
    if spec.anatomy:
        total = sum(s.count for s in target_stats)
        out["toward_zero"] = sum(s.sums["toward_zero"] for s in target_stats) / total
        out["below_eps"] = sum(s.sums["below_eps"] for s in target_stats) / total
        out["grad_norm"] = sum(s.sums["g_sq"] for s in target_stats).sqrt()
    if spec.reference is not None:
        out["alignment"] = _alignment(target_stats, spec.reference)
    return out
