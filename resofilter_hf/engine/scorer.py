"""Batched scoring of prepared rows: token-budget batches, process shares, shards on disk, OOM retries.

`ResonanceScorer.score_batch(rows, capture)` runs one forward and one partial backward (the backward stops at the
lowest target), turns the captured inputs and output-gradients into per-sample deltas and reduces them.
`score_window` plans a window of prepared rows into length-sorted batches grouped in shards, scores this
process's shards and writes each to the `ShardStore`; a shard already complete is skipped, so a rerun resumes.
Batches depend only on the rows and the settings, never on the number of processes or on what was resumed, so
every process count and every resumed run computes each score from the very same batch.
Scoring leaves the model exactly as it found it: weights, train/eval mode of every module, requires_grad flags,
hooks, RNG.
"""

import dataclasses
import math
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn
from tqdm.auto import tqdm

from .capture import GradientCapture
from .deltas import AdamState, ScoreSpec, compute_dtype, gradient_chunks, score_records
from .fingerprint import table_digest
from .head import LMHead
from .quantized import check_not_repacked, cpu_4bit_repack_guard
from .rows import STATUS_NO_TOKENS, STATUS_OK
from .shards import ANATOMY_COLUMNS, ID, STATUS, ShardStore
from .targets import Target, unwrap_model


SHARDS_PER_WINDOW = 64  # shards a window of prepared rows is cut into (each at least one batch)
OOM_ERRORS: tuple[type[BaseException], ...] = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


class RowTooLongError(ValueError):
    """One row alone exceeds the token budget or the device memory."""


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def scoring_mode(model: nn.Module, targets: list[Target]):
    """Eval mode (no dropout, no gradient checkpointing), gradients only at the targets; all restored after."""
    check_not_repacked(model, "Scoring")
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    rng = _rng_state()
    # Cut the graph at the input embeddings, whatever hooks (e.g. PEFT's enable_input_require_grads) say, so the
    # forward records nothing below the lowest target.
    embeddings = unwrap_model(model).get_input_embeddings()
    cut = embeddings.register_forward_hook(lambda module, args, output: output.detach())
    try:
        with cpu_4bit_repack_guard(model):
            model.eval()
            for p, _ in flags:
                p.requires_grad_(False)
            for target in targets:
                target.weight.requires_grad_(True)
            yield
    finally:
        cut.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode
        _set_rng_state(rng)


def plan_batches(
    lengths: np.ndarray, ids: np.ndarray, batch_size: int, batch_tokens: int | None = None, pad_multiple: int = 1
) -> list[np.ndarray]:
    """Positions of each batch: longest rows first (little padding, memory peaks early), at most `batch_size`
    rows and, with `batch_tokens`, at most that many padded tokens (rows x longest row) per batch."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    if batch_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches, start = [], 0
    while start < len(order):
        longest = int(lengths[order[start]])
        padded = math.ceil(longest / pad_multiple) * pad_multiple
        if padded > batch_tokens:
            raise RowTooLongError(
                f"row {int(ids[order[start]])} has {longest} tokens, more than `resonance_batch_tokens`="
                f"{batch_tokens}: it cannot be scored within the budget. Raise `resonance_batch_tokens` to at "
                f"least {padded} or lower `max_length`."
            )
        size = max(1, min(batch_size, batch_tokens // padded, len(order) - start))
        batches.append(order[start : start + size])
        start += size
    return batches


@dataclass
class WindowPlan:
    """A window of prepared rows (`table`: id, input_ids, labels) in batch order, so each batch and each shard is a
    contiguous slice; `shards[k]` lists shard k's batches as (start, stop) row ranges of `table`."""

    window: int
    table: pa.Table
    shards: list[list[tuple[int, int]]]

    def shard_name(self, k: int) -> str:
        return f"w{self.window:06d}-s{k:05d}"

    def shard_rows(self, k: int) -> pa.Table:
        batches = self.shards[k]
        return self.table.slice(batches[0][0], batches[-1][1] - batches[0][0])

    def rows(self, batch: tuple[int, int]) -> list[dict]:
        return self.table.slice(batch[0], batch[1] - batch[0]).to_pylist()


class ResonanceScorer:
    """Scores prepared rows ({"input_ids", "labels"}) with per-sample deltas of `targets`."""

    oom_errors: tuple[type[BaseException], ...] = OOM_ERRORS  # what counts as out of memory (split and retry)

    def __init__(
        self,
        model: nn.Module,
        targets: list[Target],
        spec: ScoreSpec,
        collate_fn: Callable[[list[dict]], dict],
        *,
        batch_size: int = 8,
        batch_tokens: int | None = None,
        state_samples: int = 256,
        process_index: int = 0,
        num_processes: int = 1,
        show_progress: bool = True,
    ):
        self.model = model
        self.targets = targets
        self.spec = spec
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.state_samples = state_samples
        self.process_index = process_index
        self.num_processes = num_processes
        self.show_progress = show_progress
        self.head = LMHead.of(model)

    def settings(self) -> dict:
        """What the scores depend on here (for the scoring folder's fingerprint)."""
        spec = self.spec
        return {
            "transform": spec.transform.__dict__,
            "metric": spec.metric,
            "anatomy": spec.anatomy,
            "lora_delta": spec.lora_delta,
            "chunk_mb": spec.chunk_mb,
            "targets": [
                (
                    t.tensor_name,
                    t.role,
                    t.scaling,
                    t.transposed,
                    str(t.rows),
                    tuple(t.weight.shape),
                    str(t.weight.dtype),
                )
                for t in self.targets
            ],
            "batch_size": self.batch_size,
            "batch_tokens": self.batch_tokens,
            "shards_per_window": SHARDS_PER_WINDOW,
            "state_samples": self.state_samples if spec.transform.optimizer == "adamw_state" else None,
        }

    @property
    def device(self) -> torch.device:
        return self.targets[0].weight.device

    # ---- one batch -------------------------------------------------------------------------------------------

    def _batch(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.collate_fn([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
        return {k: v.to(self.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}

    def _forward_backward(self, rows: list[dict], capture: GradientCapture) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self._batch(rows)
        capture.clear()
        with torch.enable_grad():
            loss, counts = self.head.per_sample_loss(batch, self.spec.chunk_mb)
            capture.backward(loss, counts > 0)
        return loss.detach(), counts

    def score_batch(self, rows: list[dict], capture: GradientCapture) -> list[dict]:
        loss, counts = self._forward_backward(rows, capture)
        values = {k: v.tolist() for k, v in score_records(capture.records, self.spec, len(rows)).items()}
        capture.clear()
        values["loss"] = loss.tolist()
        out = []
        for i, n in enumerate(counts.tolist()):  # one device-to-host copy per column, not per row
            out.append({"tokens": n, **{key: column[i] if n else float("nan") for key, column in values.items()}})
        return out

    def estimate_second_moment(self, rows: list[dict], capture: GradientCapture) -> dict[str, AdamState]:
        """Mean per-sample g^2 of every target over `rows` (all processes), as settled AdamW moments."""
        dtype = compute_dtype(self.targets[0].weight.dtype)
        sums = {t.name: torch.zeros(t.matrix.shape, dtype=dtype, device=self.device) for t in self.targets}
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        mine = rows[self.process_index :: self.num_processes]
        for start in range(0, len(mine), self.batch_size):
            chunk = mine[start : start + self.batch_size]
            _, counts = self._forward_backward(chunk, capture)
            for record in capture.records:
                for rows_, g in gradient_chunks(record, dtype, self.spec.chunk_mb):
                    sums[record.target.name][rows_] += (g * g).sum(0)
            count += int((counts > 0).sum())
            capture.clear()
        if self.num_processes > 1 and torch.distributed.is_initialized():
            for tensor in [*sums.values(), count]:
                torch.distributed.all_reduce(tensor)
        return {name: AdamState(exp_avg_sq=s / count.clamp(min=1)) for name, s in sums.items()}

    # ---- planning and running a window of prepared rows ------------------------------------------------------

    def plan(self, prepared: pa.Table, window: int) -> WindowPlan:
        """`prepared` (columns id, input_ids, labels) as length-sorted batches grouped into shards."""
        lengths = pc.list_value_length(prepared.column("input_ids")).to_numpy(zero_copy_only=False)
        pad = getattr(self.collate_fn, "pad_to_multiple_of", None) or 1
        batches = plan_batches(lengths, prepared.column(ID).to_numpy(), self.batch_size, self.batch_tokens, pad)
        order = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        table = prepared.take(pa.array(order, type=pa.int64())).combine_chunks()  # one take; then slices
        bounds = np.cumsum([0, *map(len, batches)])
        ranges = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        per_shard = max(1, math.ceil(len(ranges) / SHARDS_PER_WINDOW))
        return WindowPlan(window, table, [ranges[i : i + per_shard] for i in range(0, len(ranges), per_shard)])

    def owner(self, window: int, shard: int) -> int:
        """The process that scores shard `shard` of window `window` (round robin, rotating per window)."""
        return (window + shard) % self.num_processes

    @contextmanager
    def session(self):
        """Scoring mode and the capture hooks, for a whole job of batches."""
        with scoring_mode(self.model, self.targets), GradientCapture(self.targets) as capture:
            yield capture

    def prepare_states(self, rows: list[dict], capture: GradientCapture) -> None:
        """For `adamw_state`: the settled second moment from `rows` (every process calls this together)."""
        if self.spec.transform.optimizer == "adamw_state" and self.spec.states is None:
            states = self.estimate_second_moment(rows[: self.state_samples], capture)
            self.spec = dataclasses.replace(self.spec, states=states)

    def score_window(self, plan: WindowPlan, store: ShardStore, capture: GradientCapture, progress) -> int:
        """Score this process's unfinished shards of `plan` into `store`; returns the rows found already done."""
        resumed = 0
        for k, batches in enumerate(plan.shards):
            if self.owner(plan.window, k) != self.process_index:
                continue
            name, part = plan.shard_name(k), plan.shard_rows(k)
            tokens, ids = table_digest([part]), part.column(ID).to_numpy()
            if store.is_done(name, tokens, ids):
                resumed += len(ids)
                progress.advance(len(ids), finished=True)
                continue
            results = []
            for batch in batches:
                rows = plan.rows(batch)
                results.extend(self.score_rows(rows, [r[ID] for r in rows], capture))
                progress.advance(len(rows))
            store.write(name, self._columns(ids, results), tokens, self.process_index)
            progress.advance(0, finished=True)
        return resumed

    def _columns(self, ids: np.ndarray, results: list[dict]) -> dict:
        columns = {ID: ids, STATUS: [STATUS_OK if r["tokens"] else STATUS_NO_TOKENS for r in results]}
        keys = ["score", "loss", "tokens", *(ANATOMY_COLUMNS if self.spec.anatomy else ())]
        keys += ["alignment"] if self.spec.reference is not None else []
        for key in keys:
            columns[key] = [r.get(key, float("nan")) for r in results]
        return columns

    def score_rows(self, rows: list[dict], ids: list[int], capture: GradientCapture) -> list[dict]:
        """`score_batch`, split in halves and retried on an out-of-memory error; one row that cannot fit fails
        with an error naming it."""
        try:
            return self.score_batch(rows, capture)
        except self.oom_errors as err:
            failed = f"{type(err).__name__}: {err}"
        capture.clear()  # outside the except block: the traceback (and the graph it holds) is gone
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(rows) == 1:
            budget = f"`resonance_batch_tokens`={self.batch_tokens}" if self.batch_tokens else "no token budget"
            raise RowTooLongError(
                f"row {ids[0]} ({len(rows[0]['input_ids'])} tokens) runs out of memory alone ({budget}; "
                f"{failed}). Lower `max_length` or `resonance_chunk_mb`, or score on a larger device."
            )
        half = len(rows) // 2
        return self.score_rows(rows[:half], ids[:half], capture) + self.score_rows(rows[half:], ids[half:], capture)

    def loss_batch(self, rows: list[dict]) -> tuple[list[float], list[int]]:
        """Forward only: each row's mean loss over its loss tokens (NaN without any) and its token count."""
        with torch.no_grad():
            loss, counts = self.head.per_sample_loss(self._batch(rows), self.spec.chunk_mb)
        counts = counts.tolist()
        return [v if n else float("nan") for v, n in zip(loss.double().tolist(), counts)], counts

    def losses(self, rows: list[dict], ids: list[int]) -> dict[int, tuple[float, int]]:
        """Forward only, this process: {id: (mean loss, token count)}, in the batches `score` would use."""
        lengths = np.array([len(r["input_ids"]) for r in rows])
        out = {}
        with scoring_mode(self.model, self.targets):
            for batch in plan_batches(lengths, np.asarray(ids), self.batch_size, self.batch_tokens):
                values, counts = self.loss_batch([rows[i] for i in batch])
                for i, value, n in zip(batch, values, counts):
                    out[ids[i]] = (value, n)
        return out


class JobProgress:
    """One bar on the main process for the whole job: this process's rows as they are scored, and the other
    processes' finished shards, read off their markers (no collective call, so no process waits on the bar)."""

    def __init__(self, store: ShardStore, total: int | None, enabled: bool, num_processes: int, desc: str):
        self.store, self.num_processes = store, num_processes
        self.bar = tqdm(total=total, desc=desc, unit="row", disable=not enabled, dynamic_ncols=True)
        self.base = 0  # rows of windows already finished
        self.pending = 0  # this process's rows in the shard it is scoring
        self._seen: dict[str, int] = {}
        self._polled = 0.0
        self.prefix = ""

    def start_window(self, window: int) -> None:
        self.prefix, self._seen, self.pending = f"w{window:06d}-", {}, 0

    def end_window(self, rows: int) -> None:
        self.base += rows
        self.pending = 0
        self._set(self.base)

    def advance(self, rows: int, finished: bool = False) -> None:
        if self.num_processes == 1:
            self.bar.update(rows)
            return
        self.pending = 0 if finished else self.pending + rows
        now = time.monotonic()
        if finished or now - self._polled > 1.0:
            self._polled = now
            for name, marker in self.store.markers(self.prefix).items():
                self._seen.setdefault(name, int(marker.get("rows", 0)))
        self._set(self.base + sum(self._seen.values()) + self.pending)

    def _set(self, n: int) -> None:
        if self.bar.disable:
            return
        self.bar.n = n
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
