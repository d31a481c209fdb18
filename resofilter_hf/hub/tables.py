"""What cards and the report say about a dataset: its score column, label columns, score summaries, per-label
breakdowns, the scoring provenance (each field where it applies) and the selection rule as sentences.

Markdown tables escape every user string (`text.markdown_table`); sentences are `text.Sentence`s, rendered as
markdown here and as HTML by the report. Nothing here writes a file.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, Value

from ..columns import OptionError, describe, named_score_column, resolve
from ..provenance import SCORING_FIELDS, read_provenance
from .analysis import numbers
from .text import Code, Md, Sentence, fmt, markdown_table, md_code, md_value


__all__ = ["fmt", "markdown_table"]  # re-exported: the cards and the report format cells alike

TRL_COLUMNS = ("prompt", "completion", "messages")  # what `columns_read_as` maps the file's columns to
LABEL_COLUMNS = ("flaw", "label")  # looked for by name when no label column is given (ClassLabel/bool always are)
APART = ("versions", "confounds")  # provenance entries with tables of their own
APPLIES: dict[str, Callable[[Mapping], bool]] = {  # scoring fields shown only where they change the score
    "lora_delta": lambda s: s.get("target") == "lora",
    "eps": lambda s: s.get("optimizer") != "sgd",
    "betas": lambda s: s.get("optimizer") == "adamw_state",  # a fresh AdamW's first step does not depend on them
}


def section(provenance: Mapping, name: str) -> dict:
    """One section of a provenance ("scoring", "selection") as a dict; {} when missing or not a mapping."""
    value = provenance.get(name) if isinstance(provenance, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


def number(value: Any) -> float | None:
    """`value` as a finite float when it is a real number (not a bool), else None: provenance is read, not
    trusted."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


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
        with np.errstate(over="ignore"):  # scores near the float64 limit: an inf mean, not an error
            rows += [("mean", float(finite.mean())), ("std", float(finite.std()))]
        rows += [(name, float(v)) for name, v in zip(("min", "25%", "median", "75%", "max"), q)]
    return rows


def label_columns_of(dataset: Dataset, label_columns: Sequence[str] | None = None) -> list[str]:
    """The columns to break scores down by: those given, else ClassLabel and bool columns and any column named
    ``flaw`` or ``label``, never one this library wrote (`resonance_truncated` is no label)."""
    if label_columns is not None:
        missing = [c for c in label_columns if c not in dataset.column_names]
        if missing:
            raise OptionError("publish_dataset", "label_columns", missing, "are not columns", dataset.column_names)
        return list(label_columns)
    scored = named_score_column(read_provenance(dataset))
    return [
        name
        for name, feature in dataset.features.items()
        if describe(name, scored) is None
        and (
            isinstance(feature, ClassLabel)
            or (isinstance(feature, Value) and (feature.dtype == "bool" or name in LABEL_COLUMNS))
        )
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
    scores = numbers(base, column)
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
        with np.errstate(over="ignore"):
            row = [label, int(mask.sum()), int(len(s) - len(finite)), float(finite.mean()) if len(finite) else None]
        row += [f"{kept_counts[name].get(label, 0) / mask.sum():.1%}" for name in kept]
        rows.append(row)
    header = [label_column, "rows", "unscored", Md(f"mean {md_code(column)}")]
    header += [Md(f"kept in {md_code(name)}") for name in kept]
    return markdown_table(header, rows)


def scoring_rows(scoring: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(label, value) of each scoring field that applies to this run (known fields first, in a fixed order, then
    any others by their key); the library versions and confounds are left to tables of their own."""
    labels = dict(SCORING_FIELDS)
    keys = [key for key, _ in SCORING_FIELDS if key in scoring] + [key for key in scoring if key not in labels]
    return [
        (labels.get(key, key), SHOWN_AS.get(key, _as_is)(scoring[key]))
        for key in keys
        if key not in APART and APPLIES.get(key, lambda _: True)(scoring)
    ]


def columns_read_as(value: Any) -> Any:
    """Which of the file's columns were read as TRL's: ``question -> prompt, answer -> completion`` from the
    mapping {TRL's name: the file's column} (a legacy file's text is shown as it is)."""
    if isinstance(value, Mapping):  # TRL's columns in their order (a provenance's keys come back sorted)
        names = sorted(value, key=lambda n: (TRL_COLUMNS.index(n) if n in TRL_COLUMNS else len(TRL_COLUMNS), str(n)))
        return ", ".join(f"{fmt(value[name])} -> {fmt(name)}" for name in names)
    return value


def _as_is(value: Any) -> Any:
    return value


SHOWN_AS: dict[str, Callable[[Any], Any]] = {"columns_read_as": columns_read_as}  # how a field's value reads


def scoring_table(scoring: Mapping[str, Any]) -> str:
    """The scoring provenance as a markdown table, the confound report and the library versions as tables of
    their own. Empty when there is no provenance."""
    if not scoring:
        return ""
    text = markdown_table(["setting", "value"], [(label, md_value(value)) for label, value in scoring_rows(scoring)])
    if isinstance(scoring.get("confounds"), Mapping) and scoring["confounds"]:
        text += "\n\n" + confound_table(scoring["confounds"], scoring.get("column"))
    versions = scoring.get("versions")
    if isinstance(versions, Mapping) and versions:
        rows = sorted((str(k), v) for k, v in versions.items())
        text += "\n\nLibrary versions:\n\n" + markdown_table(["package", "version"], rows)
    return text


def confound_table(confounds: Mapping[str, Any], column: str | None = None) -> str:
    """Each score column's Spearman correlation with completion length and with loss (the score column first)."""
    entries = {str(name): entry for name, entry in confounds.items() if isinstance(entry, Mapping)}
    names = sorted(entries, key=lambda name: (name != column, name))
    rows = [(md_code(n), entries[n].get("length"), entries[n].get("loss"), entries[n].get("n")) for n in names]
    header = ["score", "Spearman with length (loss tokens)", "Spearman with loss", "rows"]
    return "Confounds (near +-1: the score mostly ranks rows by length or by loss):\n\n" + markdown_table(header, rows)


def selection_rule(provenance: Mapping[str, Any]) -> Sentence:
    """Which rows a dataset's selection kept, e.g. ``keep 50% of the scored rows (highest dropped), dedup on
    prompt``; the column and the end dropped as `columns.resolve` reads them from its `provenance`."""
    selection = section(provenance, "selection")
    if not selection:
        return Sentence("all rows")
    column, drop = resolve(provenance, selection.get("column") if isinstance(selection.get("column"), str) else None)
    if selection.get("keep") is not None:
        keep = number(selection["keep"])
        shown = f"{keep * 100:.4g}%" if keep is not None else selection["keep"]
        template, values = "keep {} of the scored rows ({} dropped)", [shown, drop]
    elif selection.get("threshold") is not None:
        op = "<=" if drop == "highest" else ">="
        template, values = f"keep {{}} {op} {{}}", [Code(column), selection["threshold"]]
    else:
        template, values = "selected", []
    if selection.get("dedup_on"):
        template, values = template + ", dedup on {}", [*values, selection["dedup_on"]]
    if selection.get("stratify_by"):
        template, values = template + ", stratified by {}", [*values, selection["stratify_by"]]
    return Sentence(template, tuple(values))


def selection_summary(provenance: Mapping[str, Any]) -> Sentence:
    """A sentence with the row accounting of a dataset's selection (its `provenance`'s "selection" section)."""
    selection = section(provenance, "selection")
    rule = selection_rule(provenance)
    counts = [selection.get(k) for k in ("n_input", "n_duplicates", "n_unscored")]
    text = Sentence(
        f"Rule: {rule.template}. Of {{}} input rows, {{}} were duplicates, {{}} unscored ({{}}), {{}} kept and {{}} "
        "dropped.",
        (*rule.values, *counts, Code(f"nan={fmt(selection.get('nan', 'drop'))}"), selection.get("n_kept"),
         selection.get("n_dropped")),
    )  # fmt: skip
    if selection.get("threshold_value") is not None:
        text = Sentence(text.template + " Score at the cut: {}.", (*text.values, selection["threshold_value"]))
    return text


def selection_table(selection: Mapping[str, Any]) -> str:
    """Every recorded selection option and count, as a markdown table."""
    return markdown_table(["option", "value"], [(k, md_value(v)) for k, v in selection.items()])
