"""Baseline scores beside the resonance column, so a selection can be compared with the obvious alternatives.

Every baseline is a float64 column named ``baseline_<name>``, NaN where the scoring pass gave no score (the row's
``resonance_status`` is not "ok"), so `select_by_resonance(ds, keep, column="baseline_loss")` applies the same rule
to any of them:

- ``loss``: mean token loss of the completion (``resonance_loss``; free, from the scoring pass).
- ``perplexity``: exp(loss).
- ``ifd``: Instruction-Following Difficulty (Cherry-LLM, Superfiltering): the completion's loss given the prompt
  over its loss alone. The "alone" loss is a forward-only pass over prompt-less copies of the rows, prepared by the
  trainer's own TRL preparation (same chat template, masks, EOS and truncation), so both losses cover the same
  completion tokens. A string prompt becomes ""; a conversational prompt (or the non-assistant turns of
  `messages`) becomes one empty user turn. Also writes the prompt-less loss as ``baseline_loss_alone``.
- ``length``: the completion's loss-token count (``resonance_tokens``).
- ``random``: uniform [0, 1) numbers from `seed`; the same seed and row count give the same column.

The loss-based columns describe the model the dataset was scored with: call this with the trainer whose model
state produced the scores.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from datasets import Dataset

from .engine.rows import STATUS_OK, dataset_kind
from .provenance import with_provenance
from .schemas import trl_column_names, trl_view


if TYPE_CHECKING:  # pragma: no cover
    from .trainer import ResonanceTrainer


BASELINES = ("loss", "perplexity", "ifd", "length", "random")
PREFIX = "baseline_"
ALONE_COLUMN = "baseline_loss_alone"
_NEEDED = ("resonance_loss", "resonance_tokens", "resonance_status")


def add_baseline_columns(
    trainer: ResonanceTrainer | None,
    scored_dataset: Dataset,
    which: Sequence[str] = BASELINES,
    seed: int = 0,
    batch_size: int | None = None,
) -> Dataset:
    """`scored_dataset` (the output of `ResonanceTrainer.score()`) plus one ``baseline_<name>`` column per name.

    `trainer` is needed only for "ifd" (its model and TRL preparation run the prompt-less pass); `batch_size`
    defaults to the trainer's `resonance_batch_size`. Existing ``baseline_*`` columns of the same names are
    replaced. Provenance section "baselines" records the names, the seed and the row counts.
    """
    which = list(which)
    unknown = [name for name in which if name not in BASELINES]
    if unknown or not which:
        raise ValueError(
            f"add_baseline_columns: unknown baseline(s) {unknown or which}; choose from {list(BASELINES)}"
        )
    missing = [c for c in _NEEDED if c not in scored_dataset.column_names]
    if missing:
        raise ValueError(
            f"add_baseline_columns: the dataset lacks {missing}; pass the output of ResonanceTrainer.score() "
            f"(columns present: {scored_dataset.column_names})"
        )
    if "ifd" in which and trainer is None:
        raise ValueError("add_baseline_columns: 'ifd' needs the trainer (its model scores the prompt-less rows)")

    n = len(scored_dataset)
    ok = np.asarray([s == STATUS_OK for s in scored_dataset["resonance_status"]], dtype=bool)
    loss = _as_float(scored_dataset["resonance_loss"], ok)
    columns: dict[str, np.ndarray] = {}
    for name in which:
        if name == "loss":
            columns["baseline_loss"] = loss
        elif name == "perplexity":
            columns["baseline_perplexity"] = np.exp(loss)
        elif name == "length":
            columns["baseline_length"] = _as_float(scored_dataset["resonance_tokens"], ok)
        elif name == "random":
            values = np.random.default_rng(seed).random(n)
            values[~ok] = np.nan
            columns["baseline_random"] = values
        else:  # ifd
            alone = np.full(n, np.nan)
            rows = np.flatnonzero(ok)
            if "messages" in trl_column_names(scored_dataset) and not trainer.args.assistant_only_loss:
                warnings.warn(
                    "add_baseline_columns: 'ifd' on `messages` rows without `assistant_only_loss=True` compares "
                    "losses over the whole conversation with and without its user turns, not the answer's alone.",
                    UserWarning,
                    stacklevel=2,
                )
            if len(rows):
                prompt_less = _without_prompt(trl_view(scored_dataset.select(rows.tolist())))
                alone[rows] = forward_losses(trainer, prompt_less, batch_size)[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                ifd = np.where(alone > 0, loss / alone, np.nan)
            columns[ALONE_COLUMN] = alone
            columns["baseline_ifd"] = ifd

    out = scored_dataset.remove_columns([c for c in columns if c in scored_dataset.column_names])
    for name, values in columns.items():
        out = out.add_column(name, values.astype(np.float64).tolist())
    return with_provenance(
        out,
        baselines={
            "which": which,
            "seed": seed,
            "columns": list(columns),
            "n_rows": n,
            "n_scored": int(ok.sum()),
        },
    )


def forward_losses(
    trainer: ResonanceTrainer, dataset: Dataset, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mean completion-token loss per row, loss-token count per row) on the trainer's current model, forward only.

    Rows go through the trainer's own TRL preparation; a row that preparation drops (no loss tokens left, or
    truncated away) gets NaN and 0 tokens. Used for IFD's prompt-less pass and for held-out loss.
    """
    if len(dataset) == 0:
        return np.full(0, np.nan), np.zeros(0, dtype=np.int64)
    kind = dataset_kind(dataset.column_names, trainer.args.dataset_text_field)
    inputs = {
        "tokenized": ["input_ids", "labels"],
        "prompt_completion": ["prompt", "completion"],
        "messages": ["messages"],
        "text": [trainer.args.dataset_text_field],
    }[kind]
    return trainer.losses(dataset.select_columns([c for c in inputs if c in dataset.column_names]), batch_size)


def _as_float(values, ok: np.ndarray) -> np.ndarray:
    out = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    out[~ok] = np.nan
    return out


def _without_prompt(dataset: Dataset) -> Dataset:
    """The rows with the prompt taken out: "" for string prompts; one empty user turn for conversational prompts
    and in place of the non-assistant turns of `messages` (an empty list would not render as a conversation)."""
    names = dataset.column_names
    empty_turn = [{"role": "user", "content": ""}]
    if "prompt" in names and "completion" in names:
        conversational = not isinstance(dataset[0]["prompt"], str)
        prompts = [empty_turn if conversational else ""] * len(dataset)
        return Dataset.from_dict({"prompt": prompts, "completion": dataset["completion"]})
    if "messages" in names:
        answers = [empty_turn + [m for m in chat if m["role"] == "assistant"] for chat in dataset["messages"]]
        return Dataset.from_dict({"messages": answers})
    raise ValueError(
        "add_baseline_columns: 'ifd' needs prompt/completion or messages rows (the answer alone is the completion "
        f"without its prompt); columns present: {names}"
    )
