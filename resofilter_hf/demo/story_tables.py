"""The story's tables: AUROC of each score against the flaw labels, the flaw share of each selection, paired
differences between retrained selections, and the markdown summary the demo prints. Each score column is read in
its flagged direction (`resofilter_hf.columns`: alignment flags its lowest values, every other score its highest)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from ..columns import flag_values
from ..selection import select_by_resonance
from .stats import auroc


def auroc_table(scored: Dataset, columns: Sequence[str], flaw_column: str = "flaw") -> list[dict[str, Any]]:
    """AUROC of each score column flagging each flaw type against the clean rows, plus "any" (all flawed rows).

    Read in the column's flagged direction (`flag_values`: higher = more likely flawed, alignment negated): 1 finds
    every flawed row first, 0.5 is chance, below 0.5 ranks flawed rows as *less* suspicious than clean ones (the
    score points the other way).
    """
    flaws = np.asarray(scored[flaw_column])
    clean = flaws == "none"
    kinds = [f for f in dict.fromkeys(flaws.tolist()) if f != "none"]
    kinds = sorted(kinds) + ["any"]
    rows = []
    for column in columns:
        values = flag_values(scored[column], column)
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
    """For keep-`keep` by each column (dropping its flagged end): rows kept and the share of them that carry a flaw."""
    rows = []
    for column in columns:
        kept = select_by_resonance(scored, keep=keep, column=column)  # the column's own direction
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


def paired_differences(
    runs: Sequence[Mapping[str, Any]], against: str, metrics: Sequence[str], same_keep: bool
) -> list[dict[str, Any]]:
    """Each run minus the run of column `against` with the same seed (and the same keep share with `same_keep`):
    one row per run that has such a partner (`against`'s own runs excluded), with ``d_<metric>`` per metric.

    Runs are dicts with "column", "keep", "seed" and the metrics, as `keep_ratio_sweep` returns them; a seed or
    keep share that `against` lacks is left out. Two runs of `against` for one key are refused.
    """
    partners: dict[tuple, Mapping[str, Any]] = {}
    for run in runs:
        if run["column"] == against:
            key = (run["seed"], run["keep"] if same_keep else None)
            if key in partners:
                raise ValueError(f"paired_differences: two runs of {against!r} for seed/keep {key}")
            partners[key] = run
    out = []
    for run in runs:
        partner = partners.get((run["seed"], run["keep"] if same_keep else None))
        if run["column"] == against or partner is None:
            continue
        row = {"column": run["column"], "keep": run["keep"], "seed": run["seed"]}
        out.append(row | {f"d_{m}": float(run[m]) - float(partner[m]) for m in metrics})
    return out


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


def story_table(
    aurocs: Sequence[dict], selections: Sequence[dict], makeup: Sequence[dict], confounds: Mapping | None = None
) -> str:
    """The markdown summary: AUROC (any flaw) per scorer with its Spearman correlation with completion length and
    with loss (`confounds`, as `resofilter_hf.confounds.confound_report` gives it), then each selection's outcome."""
    confounds = confounds or {}
    any_flaw = [
        {
            "scorer": r["scorer"],
            "auroc_any_flaw": r["auroc"],
            "spearman_length": _rho(confounds.get(r["scorer"], {}).get("length")),
            "spearman_loss": _rho(confounds.get(r["scorer"], {}).get("loss")),
        }
        for r in aurocs
        if r["flaw"] == "any"
    ]
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


def _rho(value: float | None) -> float:
    return math.nan if value is None else value
