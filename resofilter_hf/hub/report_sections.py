"""The sections of the HTML report, each built from a `Context` (the dataset and its score columns, ready)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ..columns import LOSS, TOKENS
from . import figures
from . import report_html as H
from .analysis import Axis, ScoreView, keep_count
from .tables import fmt, number, scoring_rows, section, selection_summary
from .text import lines


@dataclass
class Context:
    dataset: Dataset
    source: str
    provenance: dict[str, Any]
    views: list[ScoreView]
    keep: float
    labels: list[str] | None
    label_name: str | None
    flags: np.ndarray | None
    against: dict[str, np.ndarray]
    dedup: str | None

    @property
    def primary(self) -> ScoreView:
        return self.views[0]

    @property
    def keep_text(self) -> str:
        return f"keep {self.keep * 100:g}%"


def _png(fig) -> bytes:
    return figures.png_bytes(fig)


def subtitle(ctx: Context, stamp: str) -> str:
    return (
        f"{ctx.source} \u00b7 score column {ctx.primary.column} \u00b7 {ctx.primary.drop} scores dropped \u00b7 "
        f"{len(ctx.dataset):,} rows \u00b7 {stamp}"
    )


def tiles(ctx: Context) -> list[str]:
    """The numbers a reader sees first."""
    view, n = ctx.primary, len(ctx.dataset)
    scored = int(np.isfinite(view.scores).sum())
    notes = [f"{scored:,} scored"]
    if n - scored:
        notes.append(f"{n - scored:,} unscored")
    if scored - len(view.order):
        notes.append(f"{scored - len(view.order):,} duplicates")
    out = [H.tile("rows", f"{n:,}", " \u00b7 ".join(notes))]
    kept = view.kept(ctx.keep)
    out.append(H.tile(ctx.keep_text, f"{len(kept):,} rows", f"cut at {view.axis.text(view.cut(ctx.keep))}"))
    for name, (rho, rows) in view.rho.items():
        out.append(H.tile(f"\u03c1 with {name.split(' (')[0]}", f"{rho:+.2f}", f"Spearman over {rows:,} rows"))
    if ctx.flags is not None and ctx.flags[view.order].any():
        n_flagged, n_kept = int(ctx.flags[view.order].sum()), int(ctx.flags[kept].sum())
        note = f"{n_kept / n_flagged:.0%} of them; {ctx.keep:.0%} at random"
        out.append(H.tile(f"flagged ({ctx.label_name}) kept", f"{n_kept:,} of {n_flagged:,}", note))
    scoring = section(ctx.provenance, "scoring")
    if scoring.get("model_id"):
        how = ", ".join(str(scoring[k]) for k in ("optimizer", "metric") if scoring.get(k))
        lr = f", lr {number(scoring['lr']):g}" if number(scoring.get("lr")) is not None else ""
        out.append(H.tile("scored by", Path(str(scoring["model_id"])).name, how + lr))
    return out


def _shown_as(axis: Axis) -> str:
    return "as is" if axis.label == axis.column else axis.label.removeprefix(f"{axis.column}: ")


def _stats_rows(views: Sequence[ScoreView]) -> list[list[Any]]:
    rows = []
    for v in views:
        finite = v.scores[np.isfinite(v.scores)]
        if not len(finite):
            rows.append([v.column, _shown_as(v.axis), 0, "-", "-", "-", "-", "-"])
            continue
        q = np.quantile(finite, [0.0, 0.5, 1.0])
        with np.errstate(over="ignore", invalid="ignore"):  # scores near the float64 limit: inf, not an error
            spread, mean = v.axis.show(finite).std(), float(finite.mean())
        rows.append([v.column, _shown_as(v.axis), f"{len(finite):,}", v.axis.text(mean),
                     f"{spread:,.{v.axis.decimals}f}", *(v.axis.text(float(x)) for x in q)])  # fmt: skip
    return rows


def _label_rows(ctx: Context, limit: int = 20) -> list[list[Any]]:
    """Per label (the `limit` most common; clean ones first): rows, mean and median score, share kept."""
    view = ctx.primary
    labels = np.asarray(ctx.labels, dtype=object)
    kept = np.zeros(len(labels), dtype=bool)
    kept[view.kept(ctx.keep)] = True
    values, counts = np.unique(labels, return_counts=True)
    common = values[np.argsort(-counts, kind="stable")[:limit]]
    rows = []
    for label in sorted(common, key=lambda v: (bool(ctx.flags[labels == v][0]), v)):
        mask = labels == label
        finite = view.scores[mask & np.isfinite(view.scores)]
        with np.errstate(over="ignore"):  # scores near the float64 limit: inf, shown as "-"
            mean = view.axis.text(float(finite.mean())) if len(finite) else "-"
            median = view.axis.text(float(np.median(finite))) if len(finite) else "-"
        flag = H.chip("flagged" if ctx.flags[mask][0] else "clean", bool(ctx.flags[mask][0]))
        rows.append([label, flag, f"{int(mask.sum()):,}", mean, median, f"{kept[mask].mean():.0%}"])
    if len(values) > limit:
        rows.append([f"... {len(values) - limit:,} rarer labels", "", f"{int(np.sort(counts)[:-limit].sum()):,}",
                     "", "", ""])  # fmt: skip
    return rows


def distribution(ctx: Context) -> str:
    view = ctx.primary
    cuts = {ctx.keep_text: view.cut(ctx.keep)} if len(view.order) else {}
    main = _png(figures.distribution_figure(view.scores, view.axis, labels=ctx.labels, cuts=cuts, drop=view.drop,
                                            title=f"{view.column}" + (f" by {ctx.label_name}" if ctx.labels else ""),
                                            size=(10.5, 3.9)))  # fmt: skip
    finite = view.axis.show(view.scores[np.isfinite(view.scores)])
    beyond = 0
    if len(finite):
        lo, hi = np.quantile(finite, [0.005, 0.995])
        beyond = int(((finite < lo) | (finite > hi)).sum())
    side = "right" if view.drop == "highest" else "left"
    caption = (
        f"Dashed line: the cut for {ctx.keep_text}; the shaded rows to its {side} are dropped. "
        f"{beyond} rows beyond the 0.5-99.5% range are drawn in the end bins."
    )
    parts = [H.figure(main, f"distribution of {view.column}", caption)]
    if ctx.labels is not None:
        parts.append(H.markup("<h3>{} by {}</h3>", view.column, ctx.label_name))
        header = [ctx.label_name, "", "rows", "mean", "median", f"kept at {ctx.keep_text}"]
        parts.append(H.table(header, _label_rows(ctx), numeric=(2, 3, 4, 5)))
    parts.append(H.Raw("<h3>Every score column</h3>"))
    header = ["column", "shown as", "scored", "mean", "std", "min", "median", "max"]
    parts.append(H.table(header, _stats_rows(ctx.views), numeric=(2, 3, 4, 5, 6, 7)))
    others = []
    for v in ctx.views[1:]:
        cut = {ctx.keep_text: v.cut(ctx.keep)} if len(v.order) else {}
        fig = figures.distribution_figure(
            v.scores, v.axis, labels=ctx.labels, cuts=cut, drop=v.drop, size=(6, 2.8), legend=False
        )
        others.append(H.figure(_png(fig), f"distribution of {v.column}", f"{v.drop} dropped"))
    if others:
        parts.append(H.markup('<div class="grid">{}</div>', H.Raw("".join(others))))
    lead = (
        "How the scores spread. The paper's score is the learning rate times a number within a few parts in 10^4 "
        "of 1, so it is shown as its deviation from lr in parts per million; other tiny-spread columns as ppm "
        "from their median."
    )
    return H.section("distribution", "Score distribution", lead, *parts)


def confounds(ctx: Context) -> str:
    lead = (
        "Does the score only measure length or loss? Spearman's rank correlation of each score column with the "
        "completion length and the loss: +1 or -1, it orders the rows exactly as they do; 0, unrelated."
    )
    if not ctx.against:
        return H.section("confounds", "Score vs length and loss", lead, H.Raw('<p class="note">No length or loss '
                         "columns (resonance_tokens, resonance_loss) in this file.</p>"))  # fmt: skip
    names = list(ctx.against)
    rows = [[v.column, *(H.markup('<span class="rho">{}</span>', f"{v.rho[k][0]:+.3f}") for k in names),
             f"{max(v.rho[k][1] for k in names):,}"] for v in ctx.views]  # fmt: skip
    parts = [H.table(["column", *(f"\u03c1 with {k}" for k in names), "rows"], rows, numeric=range(1, len(names) + 2))]
    figs = [_confound_png(v, ctx) for v in ctx.views]
    parts.append(H.figure(figs[0], f"{ctx.primary.column} against length and loss"))
    if len(figs) > 1:
        grid = "".join(
            H.figure(png, f"{v.column} against length and loss", v.column) for v, png in zip(ctx.views[1:], figs[1:])
        )
        parts.append(H.markup('<details><summary class="note">The other {} score columns</summary><div class="grid">'
                              "{}</div></details>", len(figs) - 1, H.Raw(grid)))  # fmt: skip
    return H.section("confounds", "Score vs length and loss", lead, *parts)


def _confound_png(view: ScoreView, ctx: Context) -> bytes:
    panels = {name: (x, view.rho[name][0]) for name, x in ctx.against.items()}
    return _png(figures.confound_figure(view.scores, view.axis, panels, labels=ctx.labels))


def _text_columns(dataset: Dataset) -> list[str]:
    names = dataset.column_names
    if "prompt" in names or "completion" in names:
        return [c for c in ("prompt", "completion") if c in names]
    return [c for c in ("messages", "text") if c in names][:1]


def _row_table(ctx: Context, picks: Sequence[tuple[int, int]], n_drop: int, cut_after: int | None = None) -> str:
    """Rows as (rank, row index): rank, row, fate, score, loss, tokens, label, texts."""
    view, ds = ctx.primary, ctx.dataset
    texts = _text_columns(ds)
    extra = [c for c in (LOSS, TOKENS) if c in ds.column_names]
    header = [
        "rank",
        "row",
        "at " + ctx.keep_text,
        f"{view.column}" + (f" ({view.axis.unit})" if view.axis.unit else ""),
        *[c.split("_")[-1] for c in extra],
    ]
    header += [ctx.label_name] if ctx.labels is not None else []
    header += texts
    rows = []
    for rank, i in picks:
        record = ds[int(i)]
        score = view.scores[i]
        cell = H.markup('{}<div class="raw">{}</div>', view.axis.text(score), fmt(float(score)))
        row = [rank + 1, int(i), "dropped" if rank < n_drop else "kept", cell]
        row += [fmt(record[c]) if isinstance(record[c], float) else record[c] for c in extra]
        if ctx.labels is not None:
            row.append(H.chip(ctx.labels[i], bool(ctx.flags[i])))
        row += [H.text_cell(record[c]) for c in texts]
        rows.append(row)

    def row_class(k: int) -> str:
        rank = picks[k][0]
        return " ".join(c for c, on in (("dropped", rank < n_drop), ("cut", rank == cut_after)) if on)

    return H.table(header, rows, numeric=range(0, 4 + len(extra)), row_class=row_class)


def rows(ctx: Context, shown: int) -> str:
    view = ctx.primary
    order, n = view.order, len(view.order)
    n_drop = n - keep_count(n, ctx.keep)
    ranks = list(enumerate(order.tolist()))
    first = max(0, min(n_drop - shown // 2, n - shown))
    lead = (
        f"Ranked by {view.column}, {view.drop} first: rank 1 is the first row the rule drops. "
        + ("Repeated prompts (after their first row) and " if ctx.dedup else "")
        + "rows without a score are not ranked. Long texts are folded: click to unfold."
    )
    parts = [
        H.markup('<h3 id="rows-highest">The {} most likely to be dropped ({} {})</h3>', shown, view.drop, view.column),
        _row_table(ctx, ranks[:shown], n_drop),
        H.markup(
            '<h3 id="rows-cut">Around the cut for {}: {} dropped above the dashed line, the rest kept</h3>',
            ctx.keep_text,
            n_drop - first,
        ),  # fmt: skip
        _row_table(ctx, ranks[first : first + shown], n_drop, cut_after=n_drop - 1),
        H.markup('<h3 id="rows-lowest">The {} most likely to be kept</h3>', shown),
        _row_table(ctx, ranks[::-1][:shown], n_drop),
    ]
    return H.section("rows", "The rows", lead, *parts)


def _drawn(views: Sequence[ScoreView]) -> list[ScoreView]:
    """The columns drawn on the keep-share chart: the score column, then the others whose curves lie lowest
    (keep the fewest flagged rows on average), one per line colour of the chart (`figures.LINE_COLORS`)."""
    others = sorted((v for v in views[1:] if v.curve.flagged_kept is not None),
                    key=lambda v: float(np.mean(v.curve.flagged_kept)))  # fmt: skip
    return [views[0], *others[: len(figures.LINE_COLORS) - 1]]


def keep_curve(ctx: Context) -> str:
    views, primary = ctx.views, ctx.primary
    drawn = _drawn(views)
    png = _png(figures.keep_curve_figure([v.curve for v in drawn], primary.axis, keep=ctx.keep))
    labelled = [v for v in views if v.curve.flagged_kept is not None]
    shares = sorted({*(k / 10 for k in range(1, 11)), round(ctx.keep, 2)})
    ks = [int(round(share * 100)) - 1 for share in shares]
    rows = [
        ["rows kept", *(f"{int(primary.curve.rows_kept[k]):,}" for k in ks)],
        [f"{primary.column} at the cut", *(primary.axis.text(primary.curve.cut[k]) for k in ks)],
    ]
    rows += [[f"{v.column} ({v.drop} dropped)", *(f"{v.curve.flagged_kept[k]:.0%}" for k in ks)] for v in labelled]
    lead = "What each keep share keeps" + (
        f": the share of the rows flagged by {ctx.label_name} that survive, per score column (the dashed "
        "diagonal is a random selection; lower is better at finding them), and the score at the cut."
        if labelled
        else ": the score at the cut and the rows kept."
    )
    parts = [H.figure(png, "keep-share curve")]
    if labelled:
        shown = "every score column" if len(drawn) >= len(labelled) else (
            f"{primary.column} and the {len(drawn) - 1} other columns whose curves lie lowest; the table has all "
            f"{len(labelled)}")  # fmt: skip
        parts.append(H.markup('<p class="note">Drawn: {}. Rows after the first two in the table: the share of the '
                              "flagged rows that the rule by each score column keeps, at each keep share.</p>",
                              shown))  # fmt: skip
    table = H.table(["keep share", *(f"{share * 100:g}%" for share in shares)], rows, numeric=range(1, len(ks) + 1))
    parts.append(H.markup('<div class="scroll">{}</div>', table))
    return H.section("keep-curve", "Keep share", lead, *parts)


def _kv_rows(items) -> list[tuple[Any, str]]:
    """(key, value) pairs with each value as readable lines (mappings one entry a line)."""
    return [(key, "\n".join(lines(value))) for key, value in items]


def provenance(ctx: Context) -> str:
    prov = ctx.provenance
    if not prov:
        return H.section("provenance", "How the scores were made", "", H.Raw(
            '<p class="note">This file carries no provenance: it was not written by resofilter-hf, or its '
            "metadata was lost on the way.</p>"))  # fmt: skip
    parts = []
    scoring, selection = section(prov, "scoring"), section(prov, "selection")
    if scoring:
        parts += [H.Raw("<h3>Scoring</h3>"), H.table(["setting", "value"], _kv_rows(scoring_rows(scoring)), cls="kv")]
        versions = scoring.get("versions")
        if isinstance(versions, Mapping) and versions:
            parts.append(H.table(["package", "version"], sorted((str(k), fmt(v)) for k, v in versions.items())))
    if selection:
        parts.append(H.markup('<h3 id="selection-rule">Selection rule</h3><p>{}</p>', H.sentence(
            selection_summary(prov))))  # fmt: skip
        parts.append(H.table(["option", "value"], _kv_rows(selection.items()), cls="kv"))
    for name, body in prov.items():
        if name in ("scoring", "selection") and isinstance(body, Mapping):
            continue
        parts.append(H.markup("<h3>{}</h3>", name))
        items = body.items() if isinstance(body, Mapping) else [("value", body)]
        parts.append(H.table(["key", "value"], _kv_rows(items), cls="kv"))
    return H.section("provenance", "How the scores were made", "", *parts)
