"""The story's tables: AUROC of each score against the flaw labels, the flaw share of each selection, and the
markdown summary the demo prints."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from ..selection import select_by_resonance
from .stats import auroc


def auroc_table(scored: Dataset, columns: Sequence[str], flaw_column: str = "flaw") -> list[dict[str, Any]]:
    """AUROC of each score column flagging each flaw type against the clean rows, plus "any" (all flawed rows).

    Higher score = more likely flawed: 1 finds every flawed row first, 0.5 is chance, below 0.5 ranks flawed rows
    as *less* suspicious than clean ones (the score points the other way).
    """
    flaws = np.asarray(scored[flaw_column])
    clean = flaws == "none"
    kinds = [f for f in dict.fromkeys(flaws.tolist()) if f != "none"]
    kinds = sorted(kinds) + ["any"]
    rows = []
    for column in columns:
        values = np.asarray(scored[column], dtype=np.float64)
        for kind in kinds:
            flawed = ~clean if kind == "any" else flaws == kind
            subset = flawed | clean
            rows.append(
                {
                    "scorer": column,
                    "flaw": kind,
                    "auroc": auroc(values[subset], flawed[subset]),
                    "n_flawed": int(flawed.sum()),
                    "n_clean": int(clean.sum()),
                }
            )
    return rows


def selection_makeup(scored: Dataset, columns: Sequence[str], keep: float, flaw_column: str = "flaw") -> list[dict]:
    """For keep-`keep` by each column: rows kept and the share of kept rows that carry a flaw."""
    rows = []
    for column in columns:
        kept = select_by_resonance(scored, keep=keep, column=column)
        flaws = np.asarray(kept[flaw_column])
        rows.append(
            {
                "column": column,
                "keep": keep,
                "n_kept": len(kept),
                "flawed_share_kept": float((flaws != "none").mean()) if len(flaws) else math.nan,
            }
        )
    return rows


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """A markdown table of `rows` (dicts); floats rounded to `digits` decimals, NaN as "nan"."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(value) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def story_table(aurocs: Sequence[dict], selections: Sequence[dict], makeup: Sequence[dict]) -> str:
    """The markdown summary: AUROC (any flaw) per scorer, then each selection's outcome."""
    any_flaw = [{"scorer": r["scorer"], "auroc_any_flaw": r["auroc"]} for r in aurocs if r["flaw"] == "any"]
    flawed = {m["column"]: m["flawed_share_kept"] for m in makeup}
    outcome = [
        {
            "selection": r["column"],
            "keep": r["keep"],
            "n_train": r["n_train"],
            "flawed_share": flawed.get(r["column"], math.nan),
            "heldout_loss": r["heldout_loss"],
            "accuracy": r["accuracy"],
        }
        for r in selections
    ]
    return format_table(any_flaw) + "\n\n" + format_table(outcome)
