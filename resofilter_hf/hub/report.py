"""`report`: a scored dataset as one static HTML page a person can open from disk, offline, and read.

The page holds, for the score column and its variants and baselines: the distribution in readable units (by label,
the keep share's cut marked), the score against completion length and loss with Spearman's rho, the ten highest,
ten lowest and ten rows around the cut with their prompt and completion, what each keep share keeps (and, with
labels, how many flagged rows), and the provenance. Figures are inline PNG, styles inline, no script, and a
Content-Security-Policy forbids any fetch, so the file is the whole report.
"""

import os
import time
from datetime import datetime, timezone
from pathlib import Path

from datasets import Dataset, DatasetDict

from ..columns import DROPS, OptionError, describe, named_score_column, no_score_column
from ..engine.files import check_not_input, write_atomic
from ..engine.options import check_option
from ..provenance import library_versions, load_scored, read_provenance
from ..selection import score_values
from . import figures
from . import report_html as H
from . import report_sections as S
from .analysis import compared_with, drop_sides, flagged, score_columns, score_view
from .notices import headlines
from .tables import label_columns_of, label_values, number, section


SHOWN_ROWS = 10
HTML_SUFFIXES = (".html", ".htm")
NAV = [("distribution", "Distribution"), ("confounds", "Length & loss"), ("rows", "Rows"),
       ("keep-curve", "Keep share"), ("provenance", "Provenance")]  # fmt: skip


def report(
    scored: Dataset | DatasetDict | str | Path,
    out: str | Path = "report.html",
    *,
    label_column: str | None = None,
    keep: float = 0.5,
    column: str | None = None,
    drop: str | None = None,
    title: str | None = None,
) -> Path:
    """Write the HTML report of `scored` (a scored or selected dataset, or the path of one) to `out`; returns it.

    Args:
        label_column: a column to break the scores down by (default: a ClassLabel/bool column or one named
            ``flaw`` or ``label``, never a column this library wrote). Rows whose label is not clean-looking
            (``none``, ``clean``, ``ok``, ``false``, ``0``, empty) count as flagged.
        keep: the keep share whose cut is marked and whose neighbourhood of rows is shown (0 < keep <= 1).
        column: the score column (default: the provenance's, else ``resonance``).
        drop: "highest" or "lowest" for `column`. Default: the file's own selection rule for the column it
            names, else each column's declared direction (`resofilter_hf.columns`: alignment drops its lowest,
            the paper's score and the others their highest).
        title: the page title (default: names the file).
    """
    check_output(out, scored)
    started = time.perf_counter()
    dataset, source = _load(scored)
    context = report_context(dataset, source, keep=keep, column=column, drop=drop, label_column=label_column)
    sections = [
        S.distribution(context),
        S.confounds(context),
        S.rows(context, SHOWN_ROWS),
        S.keep_curve(context),
        S.provenance(context),
    ]
    elapsed = time.perf_counter() - started
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    html = H.page(
        title or f"ResoFilter report: {source}",
        S.subtitle(context, stamp),
        S.tiles(context),
        NAV,
        sections,
        f"resofilter-hf {library_versions().get('resofilter-hf', 'dev')} \u00b7 {len(dataset):,} rows \u00b7 "
        f"built in {elapsed:.1f} s \u00b7 {stamp}",
        notices=headlines(context.provenance, named_score_column(context.provenance)),
    )
    return write_atomic(out, html)


def check_output(out: str | Path, scored: Dataset | DatasetDict | str | Path) -> None:
    """Refuse, before any work, an `out` that is a folder, does not end in .html/.htm, or would overwrite the scored
    file it reads (a report written over its input would lose the scores)."""
    if not str(out).strip():
        raise ValueError("report: out is empty; give a file path such as report.html")
    if isinstance(scored, (str, os.PathLike)):
        check_not_input(out, [scored])
    path = Path(out).expanduser()
    if path.is_dir():
        raise ValueError(
            f"report: cannot write {out}: it is a folder; give a file path such as {path / 'report.html'}"
        )
    if path.suffix.lower() not in HTML_SUFFIXES:
        raise ValueError(f"report: cannot write {out}: the report is one HTML page; give a path ending in .html")


def report_context(
    dataset: Dataset,
    source: str = "dataset",
    *,
    keep: float = 0.5,
    column: str | None = None,
    drop: str | None = None,
    label_column: str | None = None,
    find_labels: bool = True,
    primary_only: bool = False,
) -> S.Context:
    """Everything the report shows of `dataset`, computed (`report`'s arguments): each score column's view with
    the end it drops (`columns.resolve`), the labels, and what the scores are compared with. `find_labels`: look
    for a label column when none is given; `primary_only`: the score column's view alone (a card's figures)."""
    if not (isinstance(keep, (int, float)) and not isinstance(keep, bool) and 0 < keep <= 1):
        raise ValueError(f"report: keep={keep!r} must be a number with 0 < keep <= 1")
    if drop is not None:
        check_option("report", "drop", drop, DROPS)
    provenance = read_provenance(dataset)
    family = named_score_column(provenance)
    primary = _primary_column(dataset, column, family)
    labels, label_name = _labels(dataset, label_column, find_labels)
    flags = flagged(labels) if labels is not None else None
    against = compared_with(dataset)
    lr = number(section(provenance, "scoring").get("lr"))
    dedup = "prompt" if {"prompt", "messages"} & set(dataset.column_names) else None
    names = [primary] if primary_only else score_columns(dataset, primary, family)
    sides = drop_sides(names, provenance, primary, drop)
    views = [
        score_view(dataset, name, lr=lr, drop=sides[name], dedup=dedup, flags=flags, against=against) for name in names
    ]
    return S.Context(
        dataset=dataset, source=source, provenance=provenance, views=views, keep=keep, labels=labels,
        label_name=label_name, flags=flags, against=against, dedup=dedup,
    )  # fmt: skip


def _load(scored) -> tuple[Dataset, str]:
    """The dataset (the train split, else the first, of a DatasetDict) and a name for it."""
    source = "dataset"
    if isinstance(scored, (str, Path)):
        source = Path(scored).name
        scored = load_scored(scored)
    if isinstance(scored, DatasetDict):
        if not scored:
            raise ValueError("report: the DatasetDict has no splits")
        split = "train" if "train" in scored else next(iter(scored))
        scored, source = scored[split], f"{source} [{split}]"
    if not isinstance(scored, Dataset):
        raise TypeError(f"report: expected a Dataset, DatasetDict or a path, got {type(scored).__name__}")
    return scored, source


def _primary_column(dataset: Dataset, column: str | None, family: str) -> str:
    """The score column: given, else the provenance's; an in-flight file's first epoch when only epochs exist."""
    name = column or family
    if name in dataset.column_names:
        score_values(dataset.select([]), name, "report")  # a column of numbers, or an error naming it
        return name
    variants = [c for c in dataset.column_names if c.startswith(f"{name}_epoch") and describe(c, name) is not None]
    if column is None and variants:
        return variants[0]
    first = "Score the dataset first (`resofilter score` or ResonanceTrainer.score())"
    if column is not None:
        raise OptionError("report", "column", column, "is not a column", dataset.column_names, then=first)
    raise no_score_column("report", name, dataset.column_names)


def _labels(dataset: Dataset, label_column: str | None, find: bool = True) -> tuple[list[str] | None, str | None]:
    if label_column is None:
        found = label_columns_of(dataset) if find else []
        if not found:
            return None, None
        label_column = found[0]
    elif label_column not in dataset.column_names:
        raise OptionError("report", "label_column", label_column, "is not a column", dataset.column_names)
    return label_values(dataset, label_column), label_column


def card_figures(
    dataset: Dataset,
    folder: str | Path,
    stem: str,
    image_dir: str = "images",
    *,
    column: str,
    cuts: dict[str, float],
    drop: str | None = None,
    label_column: str | None = None,
    keep: float | None = None,
) -> dict[str, str]:
    """The report's figures for a dataset card, as PNGs in the repo `folder` under `image_dir`: ``<stem>.png`` (the
    distribution with each cut in `cuts`), ``<stem>_confounds.png`` (score vs length and loss, when the file has
    them) and ``<stem>_keep.png`` (the keep-share curve, `keep` marked). Returns kind -> path in the repo. `drop`
    defaults as in `report`."""
    context = report_context(dataset, keep=keep or 0.5, column=column, drop=drop, label_column=label_column,
                             find_labels=False, primary_only=True)  # fmt: skip
    view, labels, against, drop = context.primary, context.labels, context.against, context.primary.drop
    title = f"{column}" + (f" by {label_column}" if labels is not None else "")
    made = {"distribution": figures.distribution_figure(view.scores, view.axis, labels=labels, cuts=cuts, drop=drop,
                                                        title=title, size=(9, 3.6))}  # fmt: skip
    if against:
        panels = {name: (x, view.rho[name][0]) for name, x in against.items()}
        made["confounds"] = figures.confound_figure(view.scores, view.axis, panels, labels=labels)
    if len(view.order):
        made["keep_curve"] = figures.keep_curve_figure([view.curve], view.axis, keep=keep)
    names = {"distribution": f"{stem}.png", "confounds": f"{stem}_confounds.png", "keep_curve": f"{stem}_keep.png"}
    for kind, fig in made.items():
        figures.save_png(fig, Path(folder) / image_dir / names[kind])
    return {kind: f"{image_dir}/{names[kind]}" for kind in made}
