"""Markdown for cards: table cells, score summaries, per-label breakdowns, and the provenance and selection tables.

Every table is GitHub-flavoured markdown, built from the dataset's columns and its provenance; nothing here
writes a file.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, Value

from ..provenance import SCORING_FIELDS, read_provenance


LABEL_COLUMNS = ("flaw", "label")  # looked for by name when no label column is given (ClassLabel/bool always are)


def fmt(value: Any) -> str:
    """A table cell: floats to 7 significant digits (scores differ in the 4th to 6th), lists comma-joined."""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.7g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return "-" if value is None else str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; `|` and newlines in cells are escaped."""

    def cell(value: Any) -> str:
        return fmt(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(value: Any) -> str:
    """Identifiers in backticks so the Hub renders them literally; numbers and None as `fmt` writes them."""
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return ", ".join(f"`{v}`" for v in value)
    return fmt(value)


def score_column(dataset: Dataset) -> str:
    """The score column named by the provenance (scoring, else selection), else the default ``resonance``."""
    prov = read_provenance(dataset)
    return (prov.get("scoring") or {}).get("column") or (prov.get("selection") or {}).get("column") or "resonance"


def scores_of(dataset: Dataset, column: str) -> np.ndarray:
    """The score column as float64 with NaN where unscored (null or NaN)."""
    if column not in dataset.column_names:
        return np.full(len(dataset), np.nan)
    return np.array([np.nan if v is None else v for v in dataset[column]], dtype=np.float64)


def score_summary(scores: np.ndarray) -> list[tuple[str, Any]]:
    """(statistic, value) pairs over the finite scores, with the count of unscored rows."""
    finite = scores[np.isfinite(scores)]
    rows: list[tuple[str, Any]] = [
        ("rows", len(scores)),
        ("scored", len(finite)),
        ("unscored", len(scores) - len(finite)),
    ]
    if len(finite):
        q = np.quantile(finite, [0.0, 0.25, 0.5, 0.75, 1.0])
        rows += [("mean", float(finite.mean())), ("std", float(finite.std()))]
        rows += [(name, float(v)) for name, v in zip(("min", "25%", "median", "75%", "max"), q)]
    return rows


def label_columns_of(dataset: Dataset, label_columns: Sequence[str] | None = None) -> list[str]:
    """The columns to break scores down by: those given, else ClassLabel and bool columns and any column named
    ``flaw`` or ``label``."""
    if label_columns is not None:
        missing = [c for c in label_columns if c not in dataset.column_names]
        if missing:
            raise ValueError(f"label_columns {missing} not in the dataset; columns present: {dataset.column_names}")
        return list(label_columns)
    return [
        name
        for name, feature in dataset.features.items()
        if isinstance(feature, ClassLabel)
        or (isinstance(feature, Value) and (feature.dtype == "bool" or name in LABEL_COLUMNS))
    ]


def label_values(dataset: Dataset, column: str) -> list[str]:
    """A label column as text (ClassLabel names, ``(none)`` for null)."""
    feature = dataset.features[column]
    values = dataset[column]
    if isinstance(feature, ClassLabel):
        return [feature.int2str(v) if v is not None and v >= 0 else "(none)" for v in values]
    return ["(none)" if v is None else str(v) for v in values]


def label_table(base: Dataset, label_column: str, *, column: str, kept: Mapping[str, Dataset] | None = None) -> str:
    """Per label of `base`: rows, unscored rows, mean score; and for each kept subset, the share of that label's
    rows it kept (its count of the label over base's)."""
    labels = label_values(base, label_column)
    scores = scores_of(base, column)
    kept = kept or {}
    kept_counts = {}
    for name, subset in kept.items():
        values, counts = np.unique(label_values(subset, label_column), return_counts=True)
        kept_counts[name] = dict(zip(values.tolist(), counts.tolist()))
    rows = []
    labels_arr = np.array(labels, dtype=object)
    for label in sorted(set(labels)):
        mask = labels_arr == label
        s = scores[mask]
        finite = s[np.isfinite(s)]
        row = [label, int(mask.sum()), int(len(s) - len(finite)), float(finite.mean()) if len(finite) else None]
        row += [f"{kept_counts[name].get(label, 0) / mask.sum():.1%}" for name in kept]
        rows.append(row)
    header = [label_column, "rows", "unscored", f"mean {column}"] + [f"kept in `{name}`" for name in kept]
    return markdown_table(header, rows)


def scoring_table(scoring: Mapping[str, Any]) -> str:
    """The scoring provenance as a markdown table (known fields first, in a fixed order, then any others), and the
    library versions as a second one. Empty when there is no provenance."""
    if not scoring:
        return ""
    known = dict(SCORING_FIELDS)
    rows = [(label, scoring[key]) for key, label in SCORING_FIELDS if key in scoring and key != "versions"]
    rows += [(key, value) for key, value in scoring.items() if key not in known and key != "versions"]
    text = markdown_table(["setting", "value"], [(label, _code(value)) for label, value in rows])
    versions = scoring.get("versions") or {}
    if versions:
        text += "\n\nLibrary versions:\n\n" + markdown_table(["package", "version"], sorted(versions.items()))
    return text


def selection_rule(selection: Mapping[str, Any]) -> str:
    """One line saying which rows a selection kept, e.g. ``keep 50% (drop highest), dedup on prompt``."""
    if not selection:
        return "all rows"
    if selection.get("keep") is not None:
        rule = f"keep {selection['keep'] * 100:.4g}% of the scored rows ({selection.get('drop', 'highest')} dropped)"
    elif selection.get("threshold") is not None:
        op = "<=" if selection.get("drop", "highest") == "highest" else ">="
        rule = f"keep {selection.get('column', 'resonance')} {op} {fmt(selection['threshold'])}"
    else:
        rule = "selected"
    if selection.get("dedup_on"):
        rule += f", dedup on {fmt(selection['dedup_on'])}"
    if selection.get("stratify_by"):
        rule += f", stratified by {selection['stratify_by']}"
    return rule


def selection_summary(selection: Mapping[str, Any]) -> str:
    """A sentence with the row accounting of a selection."""
    counts = {k: selection.get(k) for k in ("n_input", "n_duplicates", "n_unscored", "n_kept", "n_dropped")}
    text = (
        f"Rule: {selection_rule(selection)}. Of {fmt(counts['n_input'])} input rows, "
        f"{fmt(counts['n_duplicates'])} were duplicates, {fmt(counts['n_unscored'])} unscored "
        f"(`nan={selection.get('nan', 'drop')}`), {fmt(counts['n_kept'])} kept and {fmt(counts['n_dropped'])} dropped."
    )
    if selection.get("threshold_value") is not None:
        text += f" Score at the cut: {fmt(selection['threshold_value'])}."
    return text


def selection_table(selection: Mapping[str, Any]) -> str:
    """Every recorded selection option and count, as a markdown table."""
    return markdown_table(["option", "value"], [(k, _code(v)) for k, v in selection.items()])
