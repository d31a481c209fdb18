"""Gradient alignment: the cosine between a sample's step and the mean step R of a trusted reference set.

LESS (Xia et al., 2024) scores a training sample by the cosine between its Adam-preconditioned gradient and the
mean gradient of a small target set, after projecting both to 8,192 random dimensions. Here nothing is projected:
R has the shape of the target weights, and each sample's cosine is summed chunk by chunk in the same pass that
forms its step (`deltas.score_records`), with the dot product and the squared norm in fp64.

R is the mean over reference rows of each row's own step under the configured transform (the raw gradient
through `sgd` without weight decay, `sgd`, fresh `adamw`, settled `adamw_state`), not the transform of the mean
gradient (the two differ for AdamW), following LESS, which also averages per-sample quantities of the target set.
Unlike LESS, the per-row steps are not normalised before averaging (LESS's mean of cosines), so a reference row
with a larger step weighs more in R; for AdamW steps, whose entries are near +-lr, the norms differ little. And
where LESS takes raw gradients of the target set against Adam steps of the candidates, here both sides are steps
of the one configured transform, so a reference row scored against R is measured like every other sample.
"""

import dataclasses
import hashlib
import json

import numpy as np
import torch

from .capture import GradientCapture
from .deltas import ReferenceStep, compute_dtype, step_chunks
from .scorer import ResonanceScorer, scoring_mode


def _fingerprint(scorer: ResonanceScorer, rows: list[dict]) -> str:
    h = hashlib.sha256(json.dumps(scorer.spec.transform.__dict__, default=str).encode())
    for row in rows:
        h.update(np.asarray([-1, *row["input_ids"], -2, *row["labels"]], dtype=np.int64).tobytes())
    return h.hexdigest()[:20]


def reference_step(scorer: ResonanceScorer, rows: list[dict], capture: GradientCapture) -> ReferenceStep:
    """R = the mean step of `rows` (tokenized {"input_ids", "labels"}) at the scorer's model state, per target.

    Runs inside `scoring_mode` with `capture` installed. Rows without loss tokens are left out (their step would
    be the weight-decay term alone), and so are rows whose loss or step is not finite (one NaN row would make R,
    and every alignment, NaN); their positions in `rows` are `ReferenceStep.nonfinite`. In a multi-process run
    each process takes a share and the sums are reduced.
    """
    spec = scorer.spec
    dtype = compute_dtype(scorer.targets[0].weight.dtype)
    sums = {t.name: torch.zeros(t.matrix.shape, dtype=torch.float64, device=scorer.device) for t in scorer.targets}
    count = torch.zeros((), dtype=torch.float64, device=scorer.device)
    bad = torch.zeros(len(rows), dtype=torch.float64, device=scorer.device)
    positions = list(range(scorer.process_index, len(rows), scorer.num_processes))
    for start in range(0, len(positions), scorer.batch_size):
        batch = positions[start : start + scorer.batch_size]
        loss, counts = scorer._forward_backward([rows[i] for i in batch], capture)
        has_tokens = (counts > 0).to(scorer.device)
        finite = torch.isfinite(loss).to(scorer.device)
        part = _batch_sums(capture, spec, dtype, has_tokens, finite)  # one pass; a NaN row makes its sums NaN
        if not bool((finite | ~has_tokens).all()):  # rare: redo the batch without its non-finite rows
            part = _batch_sums(capture, spec, dtype, has_tokens & finite, finite)
        for name, total in part.items():
            sums[name] += total
        count += (has_tokens & finite).sum()
        bad[torch.as_tensor(batch, device=scorer.device)[has_tokens & ~finite]] = 1.0
        capture.clear()
    if scorer.num_processes > 1 and torch.distributed.is_initialized():
        for tensor in [*sums.values(), count, bad]:
            torch.distributed.all_reduce(tensor)
    n, nonfinite = int(count), tuple(torch.nonzero(bad).flatten().tolist())
    if n == 0:
        why = f" ({len(nonfinite)} with a non-finite loss or step)" if nonfinite else ""
        raise ValueError(
            f"`resonance_reference`: none of its {len(rows)} rows has a finite step to take{why}: nothing to align to."
        )
    steps = {name: (s / n).to(dtype) for name, s in sums.items()}  # summed in fp64, kept in the compute dtype
    return ReferenceStep(steps, n_rows=n, fingerprint=_fingerprint(scorer, rows), nonfinite=nonfinite)


def _batch_sums(capture: GradientCapture, spec, dtype, use: torch.Tensor, finite: torch.Tensor) -> dict:
    """Each target's sum of the `use` rows' steps (fp64), in one pass over the chunks; `finite` is narrowed in place
    to the rows whose every step entry is finite."""
    sums = {}
    for record in capture.records:
        total = torch.zeros(record.target.matrix.shape, dtype=torch.float64, device=finite.device)
        for out_rows, _, _, d in step_chunks(record, spec, dtype):
            finite &= torch.isfinite(d).flatten(1).all(1)
            total[out_rows] += d[use].sum(0, dtype=torch.float64)
        sums[record.target.name] = total
    return sums


def attach_reference(scorer: ResonanceScorer, reference_rows: list[dict]) -> ReferenceStep:
    """Compute R on `reference_rows` and put it in `scorer.spec`, so the scorer adds an "alignment" result.

    With `adamw_state`, prepare the settled moments first (`ResonanceScorer.prepare_states`), so that R and every
    sample's step share one preconditioner.
    """
    with scoring_mode(scorer.model, scorer.targets), GradientCapture(scorer.targets) as capture:
        reference = reference_step(scorer, reference_rows, capture)
    scorer.spec = dataclasses.replace(scorer.spec, reference=reference)
    return reference
