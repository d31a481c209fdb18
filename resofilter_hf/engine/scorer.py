"""Batched scoring of tokenized rows: batches, row ids, resume files, process shards.

`ResonanceScorer.score(rows, ids)` runs one forward and one partial backward per batch (the backward stops at the
lowest target), turns the captured inputs and output-gradients into per-sample deltas and reduces them. It leaves
the model exactly as it found it: weights, train/eval mode of every module, requires_grad flags, hooks, RNG.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .capture import GradientCapture
from .deltas import AdamState, ScoreSpec, compute_dtype, gradient_rows, rows_per_chunk, score_records
from .head import LMHead
from .quantized import check_not_repacked, cpu_4bit_repack_guard
from .targets import Target, unwrap_model


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


def _longest_first(items: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """Batches of similar length waste little on padding, and memory peaks come first."""
    return sorted(items, key=lambda item: -len(item[1]["input_ids"]))


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def model_checksum(model: nn.Module) -> str:
    """A cheap fingerprint of the weights (shape, dtype and a strided sample of every tensor)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 4096)]
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        h.update(sample.float().cpu().numpy().tobytes())
    return h.hexdigest()


class ResonanceScorer:
    """Scores tokenized rows ({"input_ids", "labels"}) with per-sample deltas of `targets`."""

    def __init__(
        self,
        model: nn.Module,
        targets: list[Target],
        spec: ScoreSpec,
        collate_fn: Callable[[list[dict]], dict],
        *,
        batch_size: int = 8,
        state_samples: int = 256,
        resume_dir: str | os.PathLike | None = None,
        process_index: int = 0,
        num_processes: int = 1,
        show_progress: bool = True,
    ):
        self.model = model
        self.targets = targets
        self.spec = spec
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.state_samples = state_samples
        self.resume_dir = Path(resume_dir) if resume_dir is not None else None
        self.process_index = process_index
        self.num_processes = num_processes
        self.show_progress = show_progress
        self.head = LMHead.of(model)

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
                grad_rows = gradient_rows(record, dtype)
                out_features, in_features = record.target.matrix.shape
                step = rows_per_chunk(len(chunk), in_features, torch.finfo(dtype).bits // 8, self.spec.chunk_mb)
                for r0 in range(0, out_features, step):  # per-sample G, a chunk of output rows at a time
                    rows_ = slice(r0, min(r0 + step, out_features))
                    g = grad_rows(rows_)
                    sums[record.target.name][rows_] += (g * g).sum(0)
            count += int((counts > 0).sum())
            capture.clear()
        if self.num_processes > 1 and torch.distributed.is_initialized():
            for tensor in [*sums.values(), count]:
                torch.distributed.all_reduce(tensor)
        return {name: AdamState(exp_avg_sq=s / count.clamp(min=1)) for name, s in sums.items()}

    # ---- a whole set of rows ---------------------------------------------------------------------------------

    def fingerprint(self, rows: list[dict], ids: list[int]) -> str:
        h = hashlib.sha256()
        spec = self.spec
        h.update(
            json.dumps([spec.transform.__dict__, spec.metric, spec.anatomy, spec.lora_delta], default=str).encode()
        )
        h.update(json.dumps([t.name for t in self.targets]).encode())
        h.update(model_checksum(self.model).encode())
        for i, row in zip(ids, rows):
            h.update(np.asarray([i, -1, *row["input_ids"], -2, *row["labels"]], dtype=np.int64).tobytes())
        return h.hexdigest()[:20]

    def _load_done(self, folder: Path) -> dict[int, dict]:
        done = {}
        for path in sorted(folder.glob("rank*.jsonl")):
            with open(path) as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a crash
                        continue
                    done[int(record["id"])] = record["result"]
        return done

    def _open_resume_file(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"rank{self.process_index}.jsonl"
        cut = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
        writer = open(path, "a")  # noqa: SIM115 (returned to the caller's ExitStack)
        if cut:  # a crash cut the last line: start on a fresh one
            writer.write("\n")
        return writer

    def score(self, rows: list[dict], ids: list[int], desc: str = "Scoring resonance") -> dict[int, dict]:
        """Score every row; returns {id: result} on every process (rows split across processes, then gathered)."""
        results: dict[int, dict] = {}
        folder = None
        if self.resume_dir is not None:
            folder = self.resume_dir / self.fingerprint(rows, ids)
            results = self._load_done(folder) if folder.exists() else {}
            # every process must see the same finished rows before any writes more, or the shares would differ
            self._barrier()
        todo = _longest_first([(i, r) for i, r in zip(ids, rows) if i not in results])
        mine = todo[self.process_index :: self.num_processes]
        with contextlib.ExitStack() as stack:
            writer = stack.enter_context(self._open_resume_file(folder)) if folder is not None else None
            bar = stack.enter_context(
                tqdm(
                    total=len(todo),
                    desc=desc,
                    unit="sample",
                    disable=not self.show_progress or self.process_index != 0,
                )
            )
            stack.enter_context(scoring_mode(self.model, self.targets))
            capture = stack.enter_context(GradientCapture(self.targets))
            if todo and self.spec.transform.optimizer == "adamw_state" and self.spec.states is None:
                ordered = [r for _, r in sorted(zip(ids, rows), key=lambda item: item[0])]
                states = self.estimate_second_moment(ordered[: self.state_samples], capture)
                self.spec = dataclasses.replace(self.spec, states=states)
            for start in range(0, len(mine), self.batch_size):
                chunk = mine[start : start + self.batch_size]
                for (i, _), result in zip(chunk, self.score_batch([r for _, r in chunk], capture)):
                    results[i] = result
                    if writer is not None:
                        writer.write(json.dumps({"id": i, "result": result}) + "\n")
                if writer is not None:
                    writer.flush()
                bar.update(len(chunk) * self.num_processes)
        return self._gather(results)

    def losses(self, rows: list[dict], ids: list[int]) -> dict[int, tuple[float, int]]:
        """Forward only, this process: {id: (mean loss over the row's loss tokens, token count)}; NaN without tokens.

        The same batches, preparation and LM head as `score`, for loss-based baselines and held-out loss.
        """
        out = {}
        todo = _longest_first(list(zip(ids, rows)))
        with scoring_mode(self.model, self.targets), torch.no_grad():
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                loss, counts = self.head.per_sample_loss(self._batch([r for _, r in chunk]), self.spec.chunk_mb)
                for (i, _), value, n in zip(chunk, loss.double().tolist(), counts.tolist()):
                    out[i] = (value if n else float("nan"), n)
        return out

    def _barrier(self) -> None:
        if self.num_processes > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def _gather(self, results: dict[int, dict]) -> dict[int, dict]:
        if self.num_processes == 1 or not torch.distributed.is_initialized():
            return results
        gathered: list[dict[int, dict] | None] = [None] * self.num_processes
        torch.distributed.all_gather_object(gathered, results)
        merged: dict[int, dict] = {}
        for part in gathered:
            merged.update(part or {})  # each id once, whichever process scored it
        return merged
