"""Keep the rows that resonate least: the paper's selection rule on a scored `datasets.Dataset`.

The rule (the ResoFilter paper's deduplication and top-resonance cut), which `select_by_resonance` applies with its
defaults:

1. Rows whose prompt repeats an earlier row's prompt exactly are dropped (the first occurrence stays).
2. Unscored rows (NaN or null in the score column) are set aside (``nan=``).
3. The remaining ``n`` scored rows are ranked by score, highest first; equal scores rank the lower original
   index first. The first ``n_drop = floor(n * (1 - keep))`` ranked rows are dropped, so
   ``n_keep = n - n_drop = ceil(n * keep)``. ``keep`` is taken as the decimal it prints as (``0.7`` is exactly
   7/10), so float error never moves the count: ``keep=0.7`` on 10 rows keeps 7.
4. The kept rows come back in their original order, with every input column.

Everything is counted in the provenance section "selection":
``n_input == n_duplicates + n_unscored + n_kept + n_dropped``, where ``n_kept`` and ``n_dropped`` are scored rows;
``n_output`` is the number of rows returned (``n_kept``, plus ``n_unscored`` when ``nan="keep"``).
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .columns import DROPS, OptionError, no_score_column, resolve
from .engine.options import check_option
from .provenance import read_provenance, with_provenance
from .schemas import trl_view


ORDERS = ("original", "score")
NANS = ("drop", "keep", "error")
LENGTH_BINS = 10  # stratify_by="length": deciles of the completion length


def select_by_resonance(
    dataset: Dataset,
    keep: float | None = None,
    *,
    threshold: float | None = None,
    column: str | None = None,
    drop: str | None = None,
    dedup_on: str | Sequence[str] | None = "prompt",
    order: str = "original",
    stratify_by: str | None = None,
    nan: str = "drop",
    seed: int | None = None,
) -> Dataset:
    """The rows of `dataset` that the resonance rule keeps (module docstring), as a new dataset.

    Args:
        keep: share of the scored rows to keep, 0 < keep <= 1 (``ceil(n * keep)`` rows). Give this or `threshold`.
        threshold: keep rows scoring ``<= threshold`` (``>=`` with ``drop="lowest"``) instead of a share.
        column: the score column (default: the one the provenance names, else ``resonance``).
        drop: "highest" (the paper: high resonance is dropped) or "lowest" (the mirror rule; ties still rank
            the lower index first, so among equal scores the earlier row is dropped first). Default
            (`columns.resolve`): the dataset's own selection rule when it was selected by this column, else the
            column's declared direction: "lowest" for alignment, "highest" for every other score.
        dedup_on: "prompt" (the `prompt` column; without one, the non-assistant turns of `messages`;
            conversations compared as canonical JSON), None (no deduplication), or column name(s).
        order: "original" (input order) or "score" (kept rows from the most keepable: lowest score first with
            ``drop="highest"``; equal scores in input order; unscored rows kept by ``nan="keep"`` last).
        stratify_by: None, "length" (the rule applied within each of 10 quantile bins of the completion's
            character length: `completion`, else the assistant turns of `messages`, else `text`; a row's bin is
            ``floor(10 * share of scored rows with a shorter completion)``), or a column
            name (the rule applied within each group of equal values). Each stratum keeps
            ``ceil(n_stratum * keep)`` rows, so the total can exceed ``ceil(n * keep)`` by one per stratum.
            Needs `keep`.
        nan: unscored rows (after deduplication) are "drop"ped, "keep"t regardless of the rule, or an "error"
            that names the first few with their `<column>_status` (or `resonance_status`).
        seed: None ranks equal scores by original index (the paper); an int ranks them in a seeded random order
            instead, so near-constant scores do not favour the end of the dataset.

    The input is not modified. Provenance section "selection" records the options and counts, and
    `threshold_value`: the score of the last kept row at the cut (None when stratified or nothing is kept).
    """
    check_option("select_by_resonance", "order", order, ORDERS)
    column, drop = resolve_column(dataset, column, drop, "select_by_resonance")
    plan = _plan(dataset, keep, threshold, column, drop, dedup_on, stratify_by, nan, seed, "select_by_resonance")
    kept = plan.kept
    if order == "score":
        scores = plan.scores[kept]
        kept = kept[np.lexsort((kept, scores if drop == "highest" else -scores))]
    rows = np.concatenate([kept, plan.unscored]) if nan == "keep" else kept
    if order == "original":
        rows = np.sort(rows)
    out = dataset.select(rows.tolist())
    info = {
        "column": column,
        "keep": None if keep is None else float(keep),
        "threshold": None if threshold is None else float(threshold),
        "threshold_value": plan.threshold_value,
        "drop": drop,
        "dedup_on": dedup_on if dedup_on is None or isinstance(dedup_on, str) else list(dedup_on),
        "order": order,
        "stratify_by": stratify_by,
        "nan": nan,
        "seed": seed,
        "n_input": len(dataset),
        "n_duplicates": len(plan.duplicates),
        "n_unscored": len(plan.unscored),
        "n_kept": len(plan.kept),
        "n_dropped": len(plan.dropped),
        "n_output": len(rows),
    }
    if plan.strata is not None:
        info["strata"] = plan.strata
    return with_provenance(out, selection=info)


def resonance_threshold(
    dataset: Dataset,
    keep: float,
    *,
    column: str | None = None,
    drop: str | None = None,
    dedup_on: str | Sequence[str] | None = "prompt",
    nan: str = "drop",
) -> float:
    """The score t such that, after the same deduplication, ``r[column] <= t`` (``>= t`` with ``drop="lowest"``)
    holds for exactly the scored rows `select_by_resonance(dataset, keep, ...)` keeps.

    t is the score of the last kept row. Raises ValueError when equal scores straddle the cut (a share-based
    selection then splits a tie by row index, which no score threshold can do) or when no row is scored.
    With ``nan="keep"``, unscored rows are kept on top of the threshold's rows.
    """
    column, drop = resolve_column(dataset, column, drop, "resonance_threshold")
    plan = _plan(dataset, keep, None, column, drop, dedup_on, None, nan, None, "resonance_threshold")
    if len(plan.kept) == 0:
        raise ValueError(f"resonance_threshold: no scored rows in column {column!r}, so there is no threshold")
    value = plan.threshold_value
    dropped = plan.scores[plan.dropped]
    if len(dropped) and (dropped.min() <= value if drop == "highest" else dropped.max() >= value):
        n_tied = int((plan.scores[plan.kept] == value).sum() + (dropped == value).sum())
        raise ValueError(
            f"resonance_threshold: {n_tied} rows share the score {value!r} at the cut for keep={keep}, and the rule "
            f"keeps only some of them (it drops lower indices first), so no threshold on {column!r} selects the same rows. "
            "Use select_by_resonance(dataset, keep=...) to apply the rule itself."
        )
    return value


def drop_order(
    dataset: Dataset,
    *,
    column: str | None = None,
    drop: str | None = None,
    dedup_on: str | Sequence[str] | None = "prompt",
) -> np.ndarray:
    """The scored rows that survive deduplication, as input indices in the order the rule drops them (first
    dropped first): `select_by_resonance(dataset, keep)` keeps the last ``ceil(n * keep)`` of them."""
    column, drop = resolve_column(dataset, column, drop, "drop_order")
    plan = _plan(dataset, 1, None, column, drop, dedup_on, None, "drop", None, "drop_order")
    scores = plan.scores[plan.kept]
    return plan.kept[np.lexsort((plan.kept, -scores if drop == "highest" else scores))]


def resolve_column(dataset: Dataset, column: str | None, drop: str | None, caller: str) -> tuple[str, str]:
    """(the score column, the end dropped) for `dataset`: `columns.resolve` on its provenance. A dataset without
    the column its provenance names, when the caller named none, is an error saying what to pass."""
    resolved, drop = resolve(read_provenance(dataset), column, drop)
    if column is None and resolved not in dataset.column_names:
        raise no_score_column(caller, resolved, dataset.column_names)
    return resolved, drop


@dataclass
class _Split:
    """Where every input row went (arrays of input indices, ascending), plus what the report needs."""

    scores: np.ndarray  # float64 per input row, NaN where unscored
    duplicates: np.ndarray
    unscored: np.ndarray
    kept: np.ndarray
    dropped: np.ndarray
    threshold_value: float | None
    strata: list[dict[str, Any]] | None


def _plan(dataset, keep, threshold, column, drop, dedup_on, stratify_by, nan, seed, caller) -> _Split:
    """Validate the options and split the row indices into duplicates, unscored, kept and dropped."""
    if (keep is None) == (threshold is None):
        raise ValueError(f"{caller}: give exactly one of keep= (a share, 0 < keep <= 1) or threshold= (a score)")
    if keep is not None:
        share = _share(keep, caller)
    else:
        if not isinstance(threshold, Real) or isinstance(threshold, bool) or math.isnan(threshold):
            raise ValueError(f"{caller}: threshold={threshold!r} must be a number (not NaN)")
        if stratify_by is not None:
            raise ValueError(
                f"{caller}: stratify_by={stratify_by!r} needs keep=; a threshold is the same in every stratum"
            )
    check_option(caller, "drop", drop, DROPS)
    check_option(caller, "nan", nan, NANS)
    if seed is not None and (not isinstance(seed, Integral) or isinstance(seed, bool)):
        raise ValueError(f"{caller}: seed={seed!r} must be None or an int")
    scores = score_values(dataset, column, caller)

    firsts = np.arange(len(dataset)) if dedup_on is None else _first_occurrences(dataset, dedup_on, caller)
    duplicates = np.setdiff1d(np.arange(len(dataset)), firsts)
    scored = firsts[~np.isnan(scores[firsts])]
    unscored = firsts[np.isnan(scores[firsts])]
    if nan == "error" and len(unscored):
        raise ValueError(
            f"{caller}: {len(unscored)} rows have no score in {column!r} (nan='error'): "
            + _describe_unscored(dataset, column, unscored)
        )

    if threshold is not None:
        keeps = scores[scored] <= threshold if drop == "highest" else scores[scored] >= threshold
        kept, dropped = scored[keeps], scored[~keeps]
        strata = None
    else:
        # rank: the rows to drop first come first; equal scores by original index, or a seeded random order
        tiebreak = np.arange(len(dataset)) if seed is None else np.random.default_rng(seed).permutation(len(dataset))
        groups = [(scored, None)] if stratify_by is None else _strata(dataset, scored, stratify_by, caller)
        kept_parts, dropped_parts, strata = [], [], []
        for rows, label in groups:
            ranked = rows[np.lexsort((tiebreak[rows], -scores[rows] if drop == "highest" else scores[rows]))]
            n_drop = math.floor(len(rows) * (1 - share))
            dropped_parts.append(ranked[:n_drop])
            kept_parts.append(ranked[n_drop:])
            strata.append({"stratum": label, "n": len(rows), "n_kept": len(rows) - n_drop})
        kept = np.sort(np.concatenate(kept_parts)) if kept_parts else scored[:0]
        dropped = np.sort(np.concatenate(dropped_parts)) if dropped_parts else scored[:0]
        strata = strata if stratify_by is not None else None

    threshold_value = None
    if len(kept) and stratify_by is None:
        threshold_value = float(scores[kept].max() if drop == "highest" else scores[kept].min())
    return _Split(scores, duplicates, unscored, kept, dropped, threshold_value, strata)


def _share(keep, caller) -> Fraction:
    """`keep` as an exact fraction: the decimal a float prints as, so 0.7 means 7/10."""
    if not isinstance(keep, Real) or isinstance(keep, bool):
        raise ValueError(f"{caller}: keep={keep!r} must be a number with 0 < keep <= 1")
    if not 0 < keep <= 1:  # also refuses NaN
        raise ValueError(f"{caller}: keep={keep!r} must satisfy 0 < keep <= 1 (the share of scored rows kept)")
    return Fraction(repr(float(keep))) if isinstance(keep, float) else Fraction(keep)


def _column(dataset: Dataset, name: str) -> pa.ChunkedArray:
    """One column as Arrow, respecting any indices mapping and ignoring the dataset's format."""
    return dataset.with_format("arrow")[name]


def score_values(dataset: Dataset, column: str, caller: str) -> np.ndarray:
    """The score column as float64, NaN where unscored (NaN or null; an all-null column is all unscored)."""
    if column not in dataset.column_names:
        raise OptionError(caller, "column", column, "is not a column", dataset.column_names)
    values = _column(dataset, column)
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type) or pa.types.is_null(values.type)):
        reason = f"holds {values.type}, not numbers; scores must be int or float"
        raise OptionError(caller, "column", column, reason)
    values = pc.fill_null(values.cast(pa.float64()), float("nan"))
    return values.to_numpy() if len(values) else np.empty(0, dtype=np.float64)


def _canonical(value) -> str:
    """An exact, hashable text for a cell (canonical JSON), so conversations and nulls compare by content."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _text_length(content) -> int:
    """Characters in a cell or message content (non-text content, e.g. multimodal parts, as canonical JSON)."""
    if content is None:
        return 0
    return len(content) if isinstance(content, str) else len(_canonical(content))


def _first_occurrences(dataset: Dataset, dedup_on, caller: str) -> np.ndarray:
    """Indices of the rows whose dedup key is seen for the first time, ascending. "prompt" is the prompt TRL read
    (`schemas.trl_view`: a question/answer dataset's question)."""
    if dedup_on == "prompt":
        dataset = trl_view(dataset)
    names = dataset.column_names
    if dedup_on == "prompt" and "prompt" not in names:
        if "messages" not in names:
            raise ValueError(
                f"{caller}: dedup_on='prompt' needs a 'prompt' or 'messages' column; columns present: {names}. "
                "Pass dedup_on=<column name or list of names>, or dedup_on=None to keep duplicates"
            )
        keys = [
            _canonical([m for m in chat if m.get("role") != "assistant"])
            for chat in _column(dataset, "messages").to_pylist()
        ]
    else:
        columns = (
            [dedup_on] if isinstance(dedup_on, str) else list(dedup_on) if isinstance(dedup_on, (list, tuple)) else []
        )
        if not columns or any(not isinstance(c, str) or c not in names for c in columns):
            reason = "is not 'prompt', None (CLI: none), or the name(s) of columns"
            raise OptionError(caller, "dedup_on", dedup_on, reason, names, also=["prompt"])
        cells = [[_canonical(v) for v in _column(dataset, c).to_pylist()] for c in columns]
        keys = cells[0] if len(cells) == 1 else list(zip(*cells))
    seen: set = set()
    firsts = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            firsts.append(i)
    return np.asarray(firsts, dtype=np.int64)


def _completion_lengths(dataset: Dataset, caller: str) -> np.ndarray:
    """Character length of each row's completion: `completion`, else assistant turns of `messages`, else `text`
    (as TRL read the rows: `schemas.trl_view`)."""
    dataset = trl_view(dataset)
    names = dataset.column_names
    for name in ("completion", "messages", "text"):
        if name in names:
            break
    else:
        raise ValueError(
            f"{caller}: stratify_by='length' needs a 'completion', 'messages' or 'text' column; columns present: "
            f"{names}. Pass stratify_by=<column name> to stratify by a column's values"
        )

    def length(cell) -> int:
        if cell is None or isinstance(cell, str):
            return _text_length(cell)
        return sum(_text_length(m.get("content")) for m in cell if name != "messages" or m.get("role") == "assistant")

    return np.asarray([length(cell) for cell in _column(dataset, name).to_pylist()], dtype=np.int64)


def _strata(dataset: Dataset, rows: np.ndarray, stratify_by: str, caller: str) -> list[tuple[np.ndarray, Any]]:
    """`rows` split into strata, each with a JSON-able label, in a fixed order."""
    if stratify_by == "length":
        lengths = _completion_lengths(dataset, caller)[rows]
        if not len(rows):
            return []
        # quantile bin: floor(bins * share of rows with a shorter completion), so equal lengths share a bin
        shorter = np.searchsorted(np.sort(lengths), lengths, side="left")
        bins = shorter * LENGTH_BINS // len(rows)
        out = []
        for b in np.unique(bins):
            members = rows[bins == b]
            in_bin = lengths[bins == b]
            out.append((members, [int(in_bin.min()), int(in_bin.max())]))
        return out
    if not isinstance(stratify_by, str) or stratify_by not in dataset.column_names:
        raise OptionError(
            caller,
            "stratify_by",
            stratify_by,
            "is not None, 'length' or a column",
            dataset.column_names,
            also=["length"],
        )
    cells = _column(dataset, stratify_by).to_pylist()
    groups: dict[str, list[int]] = {}
    labels: dict[str, Any] = {}
    for i in rows.tolist():
        key = _canonical(cells[i])
        groups.setdefault(key, []).append(i)
        labels.setdefault(key, cells[i] if isinstance(cells[i], (str, int, float, bool, type(None))) else key)
    return [(np.asarray(members, dtype=np.int64), labels[key]) for key, members in groups.items()]


def _describe_unscored(dataset: Dataset, column: str, rows: np.ndarray, limit: int = 5) -> str:
    """The first few unscored row indices, with their status when the scorer wrote one."""
    status_column = next((c for c in (f"{column}_status", "resonance_status") if c in dataset.column_names), None)
    shown = rows[:limit].tolist()
    if status_column is None:
        text = f"rows {shown}"
    else:
        status = _column(dataset, status_column).to_pylist()
        text = ", ".join(f"row {i} ({status_column}={status[i]!r})" for i in shown)
    return text + (" ..." if len(rows) > limit else "")
