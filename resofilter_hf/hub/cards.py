"""Dataset and model cards for scored data, rendered from the templates in `model_cards/`, without network.

A card says how its rows were made: the scoring provenance (model, target weights, optimizer transform), the
selection rule of each config with its row counts, a histogram of the scores with each config's cut marked, and
per-label statistics when the data carries labels. Generated sections sit between ``resofilter-hf:begin/end``
comment markers, so `merge_card` can refresh them in a card a person has since edited, and keep the rest.
"""

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from datasets import ClassLabel, Dataset, DatasetDict, Value
from huggingface_hub import DatasetCard, ModelCard, RepoCard
from huggingface_hub.errors import HFValidationError
from huggingface_hub.repocard import REGEX_YAML_BLOCK
from huggingface_hub.repocard_data import DatasetCardData, ModelCardData
from huggingface_hub.utils import validate_repo_id

from ..provenance import CITATION, SCORES_FILE, SCORING_FIELDS, read_provenance, write_scores_file


TAGS = ["resofilter-hf", "data-filtering"]
LABEL_COLUMNS = ("flaw", "label")  # looked for by name when no label column is given (ClassLabel/bool always are)
IMAGE_DIR = "images"
SECTION = re.compile(r"<!-- resofilter-hf:begin (\S+) -->.*?<!-- resofilter-hf:end \1 -->\n?", re.S)

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # resofilter_hf/


def template_path(name: str, package_dir: Path = _PACKAGE_DIR) -> Path:
    """The card template `name`: from the installed wheel (``resofilter_hf/_model_cards``), else the source tree's
    top-level ``model_cards/`` folder."""
    for folder in (package_dir / "_model_cards", package_dir.parent / "model_cards"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"card template {name!r} is in neither {package_dir / '_model_cards'} (installed) nor "
        f"{package_dir.parent / 'model_cards'} (source tree)"
    )


# ---------------------------------------------------------------------------------------------------- small pieces


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


def is_repo_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub repo id (``org/name`` or ``name``) rather than a local path."""
    if not name or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


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


def histogram_figure(
    scores: np.ndarray,
    *,
    thresholds: Mapping[str, float] | None = None,
    drop: str = "highest",
    column: str = "resonance",
    title: str | None = None,
    bins: int = 40,
):
    """A matplotlib `Figure` (Agg canvas, no display needed) with the histogram of the finite `scores`, each
    threshold a vertical line labelled with its config name, and the side the first threshold drops shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finite = np.asarray(scores, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    fig = Figure(figsize=(7, 4.2 if thresholds else 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if len(finite):
        ax.hist(finite, bins=bins, color="#4c72b0", alpha=0.85)
    else:
        ax.text(0.5, 0.5, "no scored rows", ha="center", va="center", transform=ax.transAxes)
    styles = ["--", ":", "-.", (0, (5, 1))]
    colors = ["#c44e52", "#dd8452", "#8172b3", "#55a868"]
    for k, (name, value) in enumerate((thresholds or {}).items()):
        label = f"{name} cut: {fmt(float(value))}"
        ax.axvline(value, color=colors[k % 4], linestyle=styles[k % 4], linewidth=1.6, label=label)
    if thresholds:
        name, first = next(iter(thresholds.items()))
        lo, hi = ax.get_xlim()
        span = (first, max(hi, first)) if drop == "highest" else (min(lo, first), first)
        ax.axvspan(*span, color="#c44e52", alpha=0.08, label=f"dropped by {name} ({drop} scores)")
        ax.set_xlim(lo, hi)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    ax.set_xlabel(column)
    ax.set_ylabel("rows")
    ax.set_title(title or f"{column}: {len(finite)} scored rows", fontsize=10)
    fig.tight_layout()
    return fig


def score_histogram(scores: np.ndarray, path: str | Path, **options: Any) -> Path:
    """`histogram_figure(scores, **options)` saved as a PNG at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    histogram_figure(scores, **options).savefig(path, format="png")
    return path


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


def _labels(dataset: Dataset, column: str) -> list[str]:
    feature = dataset.features[column]
    values = dataset[column]
    if isinstance(feature, ClassLabel):
        return [feature.int2str(v) if v is not None and v >= 0 else "(none)" for v in values]
    return ["(none)" if v is None else str(v) for v in values]


def label_table(base: Dataset, label_column: str, *, column: str, kept: Mapping[str, Dataset] | None = None) -> str:
    """Per label of `base`: rows, unscored rows, mean score; and for each kept subset, the share of that label's
    rows it kept (its count of the label over base's)."""
    labels = _labels(base, label_column)
    scores = scores_of(base, column)
    kept = kept or {}
    kept_counts = {}
    for name, subset in kept.items():
        values, counts = np.unique(_labels(subset, label_column), return_counts=True)
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


# ----------------------------------------------------------------------------------------------------- provenance


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


def _code(value: Any) -> str:
    """Identifiers in backticks so the Hub renders them literally; numbers and None as `fmt` writes them."""
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return ", ".join(f"`{v}`" for v in value)
    return fmt(value)


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


# ----------------------------------------------------------------------------------------------------- cards


def _main_split(splits: DatasetDict) -> str:
    return "train" if "train" in splits else next(iter(splits))


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def _python_name(config: str) -> str:
    name = re.sub(r"\W", "_", config)
    return name if name.isidentifier() and not name[0].isdigit() else f"ds_{name}"


def render_dataset_card(
    configs: Mapping[str, DatasetDict],
    data_files: Mapping[str, Mapping[str, Sequence[str]]],
    *,
    repo_id: str | None = None,
    folder: str | Path | None = None,
    label_columns: Sequence[str] | None = None,
    pretty_name: str | None = None,
    license: str | None = None,
) -> DatasetCard:
    """The dataset card for `configs` (config name -> splits) stored at `data_files` (config -> split -> paths
    in the repo). With `folder` (the repo folder being staged), a histogram PNG per scored config is written to
    ``folder/images/`` and shown in the card.

    A config whose provenance has no "selection" section is a scored set; when there is exactly one, the other
    configs are read as selections from it: their cuts are drawn on its histogram and the label table says
    what share of each label they kept. The first scored config is the default one.
    """
    if not configs:
        raise ValueError("render_dataset_card: no configs to describe")
    first = {name: splits[_main_split(splits)] for name, splits in configs.items()}
    provenance = {name: read_provenance(ds) for name, ds in first.items()}
    bases = [name for name in configs if "selection" not in provenance[name]]
    default = bases[0] if bases else next(iter(configs))
    derived = {name: bases[0] for name in configs if name not in bases} if len(bases) == 1 else {}

    yaml_configs = []
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
        yaml_configs.append(entry)
    total = sum(len(ds) for ds in configs[default].values())
    card_data = DatasetCardData(
        pretty_name=pretty_name or (repo_id.split("/")[-1] if repo_id else "Resonance-scored dataset"),
        license=license,
        size_categories=[_size_category(total)],
        tags=list(TAGS),
        configs=yaml_configs,
    )

    config_rows = []
    for name, splits in configs.items():
        selection = provenance[name].get("selection") or {}
        config_rows.append(
            {
                "name": name,
                "var": _python_name(name),
                "splits": ", ".join(f"{s} ({len(ds)})" for s, ds in splits.items()),
                "rows": sum(len(ds) for ds in splits.values()),
                "rule": "all scored rows" if not selection else selection_rule(selection),
            }
        )

    selection_blocks = []
    for name, splits in configs.items():
        for split, ds in splits.items():
            selection = read_provenance(ds).get("selection")
            if selection:
                selection_blocks.append(
                    {
                        "name": name,
                        "split": split if len(splits) > 1 else "",
                        "summary": selection_summary(selection),
                        "table": selection_table(selection),
                    }
                )

    histograms, label_blocks = [], []
    drawn = bases if bases else list(configs)
    for name in drawn:
        split = _main_split(configs[name])
        ds = configs[name][split]
        column = score_column(ds)
        scores = scores_of(ds, column)
        children = [child for child, parent in derived.items() if parent == name]
        cuts = {}
        for child in children if name in bases else [name]:
            sel = read_provenance(configs[child].get(split, first[child])).get("selection") or {}
            if sel.get("threshold_value") is not None:
                cuts[child] = float(sel["threshold_value"])
        drop = next(
            iter(provenance[c]["selection"].get("drop", "highest") for c in children or [name] if c not in bases),
            "highest",
        )
        entry = {
            "name": name,
            "caption": f"Split `{split}`: {int(np.isfinite(scores).sum())} scored rows of {len(scores)}."
            + (f" Vertical lines: the score at each config's cut ({drop} scores dropped)." if cuts else ""),
            "table": markdown_table(["statistic", "value"], score_summary(scores)),
            "image": None,
        }
        if folder is not None:
            image = f"{IMAGE_DIR}/{column}_{name}.png"
            score_histogram(
                scores,
                Path(folder) / image,
                thresholds=cuts,
                drop=drop,
                column=column,
                title=f"{name} / {split}: {int(np.isfinite(scores).sum())} scored rows",
            )
            entry["image"] = image
        histograms.append(entry)
        kept = {child: configs[child][split] for child in children if split in configs[child]}
        for label_column in label_columns_of(ds, label_columns):
            label_blocks.append(
                {
                    "name": name,
                    "column": label_column,
                    "table": label_table(ds, label_column, column=column, kept=kept),
                }
            )

    scoring = next((p["scoring"] for p in provenance.values() if p.get("scoring")), {})
    return DatasetCard.from_template(
        card_data,
        template_path=str(template_path("dataset_card.md")),
        pretty_name=card_data.pretty_name,
        load_path=repo_id or (str(folder) if folder is not None else "path/to/this/folder"),
        config_rows=config_rows,
        scoring_table=scoring_table(scoring),
        selection_blocks=selection_blocks,
        histograms=histograms,
        score_column=score_column(first[default]),
        label_blocks=label_blocks,
        citation=CITATION,
    )


def render_model_card(
    *,
    scored_dataset: Dataset | None = None,
    base_model: str | None = None,
    model_name: str | None = None,
    model_repo_id: str | None = None,
    dataset_repo_id: str | None = None,
    dataset_config: str | None = None,
    scores_file: str | None = None,
    library_name: str | None = None,
    tags: Sequence[str] = (),
) -> ModelCard:
    """The card of a checkpoint trained on resonance-selected data: the dataset it links, the selection rule and
    counts, the scores file beside the weights and the scoring provenance (all read from `scored_dataset`)."""
    provenance = read_provenance(scored_dataset) if scored_dataset is not None else {}
    scoring = provenance.get("scoring") or {}
    selection = provenance.get("selection") or {}
    base_model = base_model or scoring.get("model_id")
    column = score_column(scored_dataset) if scored_dataset is not None else "resonance"
    card_data = ModelCardData(
        base_model=base_model if is_repo_id(base_model) else None,  # the Hub rejects a local path here
        datasets=[dataset_repo_id] if dataset_repo_id else None,
        library_name=library_name,
        tags=list(dict.fromkeys([*TAGS, *tags])),
    )
    score_cols = []
    if scored_dataset is not None:
        score_cols = [c for c in scored_dataset.column_names if c == column or c.startswith(f"{column}_")]
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path("model_card.md")),
        model_name=model_name or (model_repo_id.split("/")[-1] if model_repo_id else "Resonance-filtered fine-tune"),
        base_model=base_model,
        base_model_link=is_repo_id(base_model),
        model_repo_id=model_repo_id,
        dataset_repo_id=dataset_repo_id,
        dataset_config=dataset_config,
        selection_summary=selection_summary(selection) if selection else "",
        selection_table=selection_table(selection) if selection else "",
        scores_file=scores_file,
        score_columns=", ".join(f"`{c}`" for c in score_cols) or f"`{column}`",
        score_table=(
            markdown_table(["statistic", "value"], score_summary(scores_of(scored_dataset, column)))
            if scored_dataset is not None
            else ""
        ),
        scoring_table=scoring_table(scoring),
        citation=CITATION,
    )


# ----------------------------------------------------------------------------------------------------- merging

_LIST_KEYS = ("tags", "datasets")  # union of old and new
_OWNED_KEYS = ("configs", "size_categories")  # ours: replaced (configs merged by name)


def merge_card(old: str, new: str, card_class: type[RepoCard] = DatasetCard) -> str:
    """`new`'s generated sections and metadata folded into the existing card text `old`.

    Metadata: ``configs`` are replaced by name (configs only `old` has stay) and the ``dataset_info`` of replaced
    configs is dropped (it would disagree with the new files), ``size_categories`` is replaced,
    ``tags``/``datasets`` are unions, any other key keeps `old`'s value and only fills in what `old` lacks.
    Body: each marked section of `old` is replaced by `new`'s (or removed when `new` no longer has it); `new`'s
    sections that `old` lacks go after the section that precedes them in `new` (at the end when there is none);
    all other text of `old` -- title, prose a person wrote -- is kept as it is.
    """
    old_card, new_card = card_class(old), card_class(new)
    old_data, new_data = old_card.data.to_dict(), new_card.data.to_dict()
    data = dict(old_data)
    for key, value in new_data.items():
        if key == "configs":
            ours = {c["config_name"]: c for c in value}
            theirs = [c for c in old_data.get("configs") or [] if c.get("config_name") not in ours]
            if any(c.get("default") for c in value):
                theirs = [{k: v for k, v in c.items() if k != "default"} for c in theirs]
            data["configs"] = [*value, *theirs]
            _drop_dataset_info(data, set(ours))
        elif key in _OWNED_KEYS:
            data[key] = value
        elif key in _LIST_KEYS and isinstance(value, list):
            data[key] = list(dict.fromkeys([*(old_data.get(key) or []), *value]))
        elif data.get(key) is None:
            data[key] = value
    body = _merge_sections(old_card.text, new_card.text)
    block = REGEX_YAML_BLOCK.search(old)
    order = list(yaml.safe_load(block.group(2)) or {}) if block else []  # the key order of old's YAML
    yaml_text = type(new_card.data)(**data).to_yaml(original_order=order)
    return f"---\n{yaml_text}\n---\n{body}"


def _drop_dataset_info(data: dict[str, Any], configs: set[str]) -> None:
    """Remove the ``dataset_info`` entries (split sizes, features) of `configs`: they describe files that are being
    replaced, and `datasets` checks split sizes against them."""
    info = data.get("dataset_info")
    if info is None:
        return
    entries = [info] if isinstance(info, dict) else list(info)
    kept = [e for e in entries if e.get("config_name", "default") not in configs]
    if not kept:
        data.pop("dataset_info")
    else:
        data["dataset_info"] = kept[0] if isinstance(info, dict) else kept


def _merge_sections(old: str, new: str) -> str:
    new_sections = {m.group(1): m.group(0) for m in SECTION.finditer(new)}
    order = list(new_sections)
    seen: list[str] = []

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in new_sections or name in seen:
            return ""
        seen.append(name)
        return new_sections[name] if new_sections[name].endswith("\n") else new_sections[name] + "\n"

    body = SECTION.sub(replace, old)
    for k, name in enumerate(order):
        if name in seen:
            continue
        before = next((p for p in reversed(order[:k]) if p in seen), None)
        block = new_sections[name]
        if before is None:
            after = next((p for p in order[k + 1 :] if p in seen), None)
            if after is None:
                body = body.rstrip("\n") + "\n\n" + block
            else:
                start = body.index(f"<!-- resofilter-hf:begin {after} -->")
                body = body[:start] + block + "\n" + body[start:]
        else:
            end_marker = f"<!-- resofilter-hf:end {before} -->"
            end = body.index(end_marker) + len(end_marker)
            body = body[:end] + "\n\n" + block.rstrip("\n") + body[end:]
        seen.append(name)
    return body


def write_checkpoint_card(
    output_dir: str | Path,
    *,
    scored_dataset: Dataset | None = None,
    base_model: str | None = None,
    dataset_repo_id: str | None = None,
    dataset_config: str | None = None,
    model_repo_id: str | None = None,
    model_name: str | None = None,
) -> Path:
    """Add the resonance model card and scores file to a saved model or adapter folder; returns the README path.

    Writes ``resonance_scores.parquet`` (``row`` plus the score columns of `scored_dataset`, with its provenance
    in the schema metadata) and README.md: a new card, or the resonance sections merged into the card already
    there (the one TRL writes, say), keeping its other text and metadata. The base model defaults to the scoring
    provenance's ``model_id``, else ``base_model_name_or_path`` of ``adapter_config.json``.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"write_checkpoint_card: {output_dir} is not a folder (save the model there first)")
    adapter_config = output_dir / "adapter_config.json"
    is_adapter = adapter_config.is_file()
    if base_model is None and scored_dataset is not None:
        base_model = (read_provenance(scored_dataset).get("scoring") or {}).get("model_id")
    if base_model is None and is_adapter:
        base_model = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    scores_file = None
    if scored_dataset is not None:
        write_scores_file(scored_dataset, output_dir, score_column(scored_dataset))
        scores_file = SCORES_FILE
    card = render_model_card(
        scored_dataset=scored_dataset,
        base_model=base_model,
        model_name=model_name,
        model_repo_id=model_repo_id,
        dataset_repo_id=dataset_repo_id,
        dataset_config=dataset_config,
        scores_file=scores_file,
        library_name="peft" if is_adapter else "transformers",
    )
    readme = output_dir / "README.md"
    text = str(card)
    if readme.is_file():
        text = merge_card(readme.read_text(encoding="utf-8"), text, ModelCard)
    readme.write_text(text, encoding="utf-8")
    return readme
