"""The dataset card of a scored dataset and the selections made from it, rendered from ``dataset_card.md``.

A card says how its rows were made: the scoring provenance (model, target weights, optimizer transform), the
selection rule of each config with its row counts, a histogram of the scores with each config's cut marked, and
per-label statistics when the data carries labels. Each generated section sits between ``resofilter-hf:begin/end``
markers, so `merge_card` can refresh it in a card a person has since edited.
"""

import keyword
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from huggingface_hub import DatasetCard
from huggingface_hub.repocard_data import DatasetCardData

from ..columns import named_score_column, resolve
from ..provenance import CITATION, read_provenance
from .analysis import numbers
from .notices import also_line, headlines
from .report import card_figures
from .tables import (
    label_columns_of,
    label_table,
    markdown_table,
    number,
    score_summary,
    scoring_table,
    section,
    selection_rule,
    selection_summary,
    selection_table,
)
from .templates import TAGS, template_path
from .text import Code, Md, Sentence, md_code, md_text, py_string, to_markdown


IMAGE_DIR = "images"


def render_dataset_card(
    configs: Mapping[str, DatasetDict],
    data_files: Mapping[str, Mapping[str, Sequence[str]]],
    *,
    repo_id: str | None = None,
    folder: str | Path | None = None,
    label_columns: Sequence[str] | None = None,
    pretty_name: str | None = None,
    license: str | None = None,
    load_path: str | None = None,
) -> DatasetCard:
    """The dataset card for `configs` (config name -> splits) stored at `data_files` (config -> split -> paths
    in the repo). With `folder` (the repo folder being staged), the HTML report's figures of each scored config
    (distribution by label with the cuts, score against length and loss, keep-share curve) are written to
    ``folder/images/`` as PNGs and shown in the card. The card's loading snippets name `repo_id`, else
    `load_path`, else `folder`.

    A strong confound of the score (`confounds.strong_confounds`) and a loss that covers the prompt are shown
    at the top of the card, with the option that addresses each.

    A config whose provenance has no "selection" section is a scored set; when there is exactly one, the other
    configs are read as selections from it: their cuts are drawn on its histogram and the label table says
    what share of each label they kept. The first scored config is the default one.
    """
    if not configs:
        raise ValueError("render_dataset_card: no configs to describe")
    family = _Family(configs)
    total = sum(len(ds) for ds in configs[family.default].values())
    card_data = DatasetCardData(
        pretty_name=pretty_name or (repo_id.split("/")[-1] if repo_id else "Resonance-scored dataset"),
        license=license,
        size_categories=[_size_category(total)],
        tags=list(TAGS),
        configs=_yaml_configs(configs, data_files, family.default),
    )
    histograms, label_blocks = [], []
    for name in family.bases or list(configs):
        histograms.append(_histogram_block(family, name, folder, label_columns))
        label_blocks += _label_blocks(family, name, label_columns)
    provenance = next((p for p in family.provenance.values() if section(p, "scoring")), {})
    column = named_score_column(family.provenance[family.default])
    return DatasetCard.from_template(
        card_data,
        template_path=str(template_path("dataset_card.md")),
        pretty_name=md_text(card_data.pretty_name),
        headlines=_headlines(provenance, column),
        load_path=py_string(repo_id or load_path or (str(folder) if folder is not None else "path/to/this/folder")),
        config_rows=_config_rows(family),
        scoring_table=scoring_table(section(provenance, "scoring")),
        selection_blocks=_selection_blocks(configs),
        histograms=histograms,
        score_column=md_code(column),
        label_blocks=label_blocks,
        citation=CITATION,
    )


def _headlines(provenance, column: str) -> list[Md]:
    """The card's "read this first" lines (markdown), from `notices.headlines`."""
    notices = headlines(provenance, column)
    out = []
    for notice in (n for n in notices if n.primary):
        lead = f"{md_code(notice.column)} " if notice.column is not None else ""
        out.append(Md(f"{lead}{notice.sentence.rstrip('.')}. What to do: {notice.remedy}."))
    also = also_line(notices)
    if also:
        out.append(Md(f"{also[0]} " + ", ".join(f"{md_code(c)} ({md_text(what)})" for c, what in also[1]) + "."))
    return out


class _Family:
    """The configs of one card and how they relate: the scored sets ("bases") and the selections derived from
    the single base when there is exactly one."""

    def __init__(self, configs: Mapping[str, DatasetDict]):
        self.configs = configs
        self.first = {name: splits[_main_split(splits)] for name, splits in configs.items()}
        self.provenance = {name: read_provenance(ds) for name, ds in self.first.items()}
        self.bases = [name for name in configs if "selection" not in self.provenance[name]]
        self.default = self.bases[0] if self.bases else next(iter(configs))
        one_base = len(self.bases) == 1
        self.derived = {name: self.bases[0] for name in configs if name not in self.bases} if one_base else {}

    def children(self, name: str) -> list[str]:
        return [child for child, parent in self.derived.items() if parent == name]


def _main_split(splits: DatasetDict) -> str:
    return "train" if "train" in splits else next(iter(splits))


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def _python_name(config: str) -> str:
    name = re.sub(r"\W", "_", config)
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"ds_{name}"


def _yaml_configs(configs, data_files, default: str) -> list[dict[str, Any]]:
    """The card's YAML ``configs:`` list, so ``load_dataset(repo_id, name)`` finds each config's files."""
    entries = []
    for name in configs:
        entry: dict[str, Any] = {
            "config_name": name,
            "data_files": [
                {"split": split, "path": list(paths) if len(paths) > 1 else paths[0]}
                for split, paths in data_files[name].items()
            ],
        }
        if name == default:
            entry["default"] = True
        entries.append(entry)
    return entries


def _config_rows(family: _Family) -> list[dict[str, Any]]:
    """One row per config for the card's overview table: splits with sizes, row count, selection rule."""
    rows = []
    for name, splits in family.configs.items():
        provenance = family.provenance[name]
        rows.append(
            {
                "name": md_code(name),
                "name_literal": py_string(name),
                "var": _python_name(name),
                "splits": md_text(", ".join(f"{s} ({len(ds)})" for s, ds in splits.items())),
                "rows": sum(len(ds) for ds in splits.values()),
                "rule": to_markdown(
                    selection_rule(provenance) if section(provenance, "selection") else Sentence("all scored rows")
                ),
            }
        )
    return rows


def _selection_blocks(configs: Mapping[str, DatasetDict]) -> list[dict[str, str]]:
    """The row accounting and options of every selected split."""
    blocks = []
    for name, splits in configs.items():
        for split, ds in splits.items():
            provenance = read_provenance(ds)
            selection = section(provenance, "selection")
            if selection:
                blocks.append(
                    {
                        "name": md_code(name),
                        "split": md_text(split) if len(splits) > 1 else "",
                        "summary": to_markdown(selection_summary(provenance)),
                        "table": selection_table(selection),
                    }
                )
    return blocks


def _cuts(family: _Family, name: str, split: str, column: str) -> tuple[dict[str, float], str]:
    """The score at each selection's cut to draw on `name`'s histogram, and which side those selections drop
    (`columns.resolve`: the first selection by `column`'s rule, else the column's declared direction)."""
    cuts, ruled = {}, None
    for child in family.children(name) if name in family.bases else [name]:
        provenance = read_provenance(family.configs[child].get(split, family.first[child]))
        sel = section(provenance, "selection")
        if number(sel.get("threshold_value")) is not None:
            cuts[child] = number(sel["threshold_value"])
        if ruled is None and sel.get("column") == column:
            ruled = provenance
    return cuts, resolve(ruled if ruled is not None else family.provenance[name], column)[1]


def _histogram_block(
    family: _Family, name: str, folder: str | Path | None, label_columns: Sequence[str] | None = None
) -> dict[str, Any]:
    """The score section of config `name`: caption, summary table and (with `folder`) the figure images."""
    split = _main_split(family.configs[name])
    ds = family.configs[name][split]
    column = named_score_column(read_provenance(ds))
    scores = numbers(ds, column)
    cuts, drop = _cuts(family, name, split, column)
    n_scored = int(np.isfinite(scores).sum())
    caption = Sentence("Split {}: {} scored rows of {}.", (Code(split), n_scored, len(scores)))
    if cuts:
        caption = Sentence(caption.template + " Vertical lines: the score at each config's cut ({} scores dropped).",
                           (*caption.values, drop))  # fmt: skip
    entry = {
        "name": md_code(name),
        "caption": to_markdown(caption),
        "table": markdown_table(["statistic", "value"], score_summary(scores)),
        "image": None,
    }
    if folder is not None:  # the HTML report's figures: distribution (by label, cuts marked), confounds, keep curve
        labels = label_columns_of(ds, label_columns)
        stem = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', column)}_{name}"  # a file name whatever the column is called
        images = card_figures(ds, folder, stem, IMAGE_DIR, column=column, cuts=cuts, drop=drop,
                              label_column=labels[0] if labels else None)  # fmt: skip
        entry.update(
            image=images.get("distribution"), confounds=images.get("confounds"), keep=images.get("keep_curve")
        )
    return entry


def _label_blocks(family: _Family, name: str, label_columns: Sequence[str] | None) -> list[dict[str, str]]:
    """Per label column of config `name`: rows and mean score per label, and the share each selection kept."""
    split = _main_split(family.configs[name])
    ds: Dataset = family.configs[name][split]
    column = named_score_column(read_provenance(ds))
    kept = {child: family.configs[child][split] for child in family.children(name) if split in family.configs[child]}
    return [
        {"name": md_code(name), "column": md_code(label_column),
         "table": label_table(ds, label_column, column=column, kept=kept)}
        for label_column in label_columns_of(ds, label_columns)
    ]  # fmt: skip
