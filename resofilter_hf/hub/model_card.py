"""The card of a checkpoint trained on resonance-selected data, and the scores file written beside its weights."""

import json
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from huggingface_hub import ModelCard
from huggingface_hub.errors import HFValidationError
from huggingface_hub.repocard_data import ModelCardData
from huggingface_hub.utils import validate_repo_id

from ..columns import named_score_column
from ..engine.files import write_atomic
from ..provenance import CITATION, SCORES_FILE, read_provenance, write_scores_file, written_columns
from .analysis import numbers
from .merge import merge_card
from .tables import (
    markdown_table,
    score_summary,
    scoring_table,
    section,
    selection_summary,
    selection_table,
)
from .templates import TAGS, template_path
from .text import md_code, md_text, py_string, to_markdown


def is_repo_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub repo id (``org/name`` or ``name``) rather than a local path."""
    if not name or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


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
    scoring, selection = section(provenance, "scoring"), section(provenance, "selection")
    base_model = base_model or (str(scoring["model_id"]) if scoring.get("model_id") else None)
    column = named_score_column(provenance)
    card_data = ModelCardData(
        base_model=base_model if is_repo_id(base_model) else None,  # the Hub rejects a local path here
        datasets=[dataset_repo_id] if dataset_repo_id else None,
        library_name=library_name,
        tags=list(dict.fromkeys([*TAGS, *tags])),
    )
    score_cols = written_columns(scored_dataset, column) if scored_dataset is not None else []  # the scores file's
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path("model_card.md")),
        model_name=md_text(
            model_name or (model_repo_id.split("/")[-1] if model_repo_id else "Resonance-filtered fine-tune")
        ),
        base_model=base_model,
        base_model_code=md_code(base_model) if base_model else "",
        base_model_link=is_repo_id(base_model),
        model_repo_id=model_repo_id,
        model_repo_literal=py_string(model_repo_id) if model_repo_id else "",
        dataset_repo_id=dataset_repo_id,
        dataset_repo_code=md_code(dataset_repo_id) if dataset_repo_id else "",
        dataset_repo_link=is_repo_id(dataset_repo_id),
        dataset_literal=py_string(dataset_repo_id) if dataset_repo_id else "",
        dataset_config=md_code(dataset_config) if dataset_config else "",
        dataset_config_literal=py_string(dataset_config) if dataset_config else "",
        selection_summary=to_markdown(selection_summary(provenance)) if selection else "",
        selection_table=selection_table(selection) if selection else "",
        scores_file=scores_file,
        score_columns=", ".join(md_code(c) for c in score_cols) or md_code(column),
        score_table=(
            markdown_table(["statistic", "value"], score_summary(numbers(scored_dataset, column)))
            if scored_dataset is not None
            else ""
        ),
        scoring_table=scoring_table(scoring),
        citation=CITATION,
    )


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
        write_scores_file(scored_dataset, output_dir)
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
    write_atomic(readme, text)
    return readme
