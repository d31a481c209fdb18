"""The jobs behind `resofilter score | select | train` and the YAML recipes.

Arguments are TRL's own dataclasses (`ScriptArguments`, `ModelConfig`) plus `ResonanceConfig`, parsed by TRL's
`TrlParser`, so a recipe is the same YAML a `trl sft --config` run takes, with `resonance_*` keys added. Two
offline sources are built in: `model_name_or_path: toy:llama` (the tiny model factory) and
`dataset_name: toy:math?n=200&seed=0`. `gsm8k` is `openai/gsm8k` (config "main") as prompt/completion rows, from
the Hub or its offline cache, or from the folder RESOFILTER_GSM8K_DIR names. Anything else is a local file or
folder (parquet, JSON Lines or `save_to_disk`), or a Hub id loaded as usual.
"""

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

from datasets import Dataset, DatasetDict, IterableDataset, load_dataset
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config, get_quantization_config

from .cli import UsageError
from .config import ResonanceConfig
from .hub.model_card import write_checkpoint_card
from .provenance import check_table_suffix, load_scored, read_provenance, write_parquet, write_table
from .selection import select_by_resonance
from .trainer import ResonanceTrainer


@dataclass
class DataArguments(ScriptArguments):
    """TRL's `ScriptArguments` plus a row cap and where scores go (columns are mapped by `ResonanceConfig`'s
    `prompt_column`/`completion_column`)."""

    max_rows: int | None = field(default=None, metadata={"help": "Use only the first N rows of the split."})
    scores_path: str | None = field(
        default=None,
        metadata={
            "help": "`score`: where the scored rows go: a parquet file (default <output_dir>/scored.parquet), or "
            "with `dataset_streaming` a folder of parquet parts (default <output_dir>/scored/)."
        },
    )


class _RecipeParser(TrlParser):
    """TRL's parser, but a bad flag or value raises a one-line `UsageError` instead of printing the usage."""

    def error(self, message: str):
        raise UsageError(message)


def parser() -> TrlParser:
    return _RecipeParser((DataArguments, ResonanceConfig, ModelConfig))


def parse(argv: list[str]) -> tuple[DataArguments, ResonanceConfig, ModelConfig]:
    """Parse `--config recipe.yaml` plus command-line overrides, as `trl sft` does. A missing config, an unknown
    key (with the closest known one) or a bad value is a `UsageError` naming the file, key or field."""
    recipe_parser = parser()
    argv = list(argv)
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise UsageError("--config needs a path to a YAML recipe")
        check_recipe(argv[at + 1], {action.dest for action in recipe_parser._actions})
    try:
        return recipe_parser.parse_args_and_config(args=argv)
    except UsageError:
        raise
    except (ValueError, TypeError) as err:  # a field's own check (__post_init__), named in the message
        raise UsageError(str(err)) from err


def check_recipe(path: str, known: set[str]) -> None:
    """The recipe file exists, is a YAML mapping, and has only known keys (else the closest one is suggested)."""
    import yaml

    if not Path(path).is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        config = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise UsageError(f"--config {path}: not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(config, dict):
        raise UsageError(f"--config {path}: must be a YAML mapping of field names to values")
    unknown = sorted(set(config) - known - {"env"})
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"--config {path}: unknown key {unknown[0]!r}{hint}")


# ---- sources -----------------------------------------------------------------------------------------------


def _toy_options(uri: str) -> tuple[str, dict]:
    parsed = urlparse(uri)
    options = {}
    for key, value in parse_qsl(parsed.query):
        options[key] = value if key == "style" else (float(value) if "." in value else int(value))
    return parsed.path, options


def load_rows(args: DataArguments, split: str | None = None) -> Dataset:
    """The rows of `args.dataset_name` (`split`, default the train split), capped at max_rows."""
    name = args.dataset_name
    if not name:
        raise ValueError("`dataset_name` is required: a Hub id, a local file or folder, 'gsm8k' or 'toy:math?n=...'.")
    split = split or args.dataset_train_split
    if name.startswith("toy:"):
        from .toy import make_math_problems, make_test_problems

        kind, options = _toy_options(name)
        if kind != "math":
            raise ValueError(f"unknown toy dataset {kind!r} in {name!r}; the toy world has 'math'.")
        n = int(options.pop("n", 200))
        dataset = make_test_problems(n, **options) if split == "test" else make_math_problems(n, **options)
    elif name == "gsm8k":
        from .evaluation.gsm8k import load_gsm8k

        dataset = load_gsm8k(split)
    elif Path(name).exists():
        loaded = load_scored(name)
        dataset = loaded[split] if isinstance(loaded, DatasetDict) else loaded
    elif _looks_like_path(name):
        raise FileNotFoundError(f"`dataset_name` {name}: no such file or folder")
    else:
        dataset = load_dataset(name, name=args.dataset_config, split=split)
    if args.max_rows is not None:
        dataset = dataset.select(range(min(args.max_rows, len(dataset))))
    return dataset


def _looks_like_path(name: str) -> bool:
    """A name no Hub id could be: absolute, relative to '.' or '~', more than one '/', or a file suffix."""
    suffixes = (".parquet", ".jsonl", ".json", ".csv", ".arrow", ".txt")
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name or name.endswith(suffixes)


def load_stream(args: DataArguments, split: str | None = None) -> IterableDataset:
    """The rows of `args.dataset_name` as a stream (`load_dataset(..., streaming=True)`); a local
    .parquet/.json/.jsonl file streams through the matching builder. `max_rows` is applied by the scoring."""
    name, split = args.dataset_name, split or args.dataset_train_split
    if not name:
        raise ValueError("`dataset_name` is required: a Hub id, a local file or folder, or 'toy:math?n=...'.")
    if name.startswith("toy:") or name == "gsm8k":  # built in: loaded whole, then streamed
        return load_rows(dataclasses.replace(args, max_rows=None), split).to_iterable_dataset()
    elif Path(name).is_file() and Path(name).suffix in (".parquet", ".json", ".jsonl"):
        builder = "parquet" if Path(name).suffix == ".parquet" else "json"
        stream = load_dataset(builder, data_files=name, split="train", streaming=True)
    else:
        stream = load_dataset(name, name=args.dataset_config, split=split, streaming=True)
    return stream


def resolve_model(name: str | None, output_dir: str) -> str:
    """`toy:<arch>?seed=..&num_layers=..` builds the tiny model into <output_dir>/toy-<arch>; anything else as is."""
    if not name:
        raise ValueError("`model_name_or_path` is required (a Hub id, a local folder, or 'toy:llama').")
    if not name.startswith("toy:"):
        if _looks_like_path(name) and not Path(name).expanduser().is_dir():
            raise FileNotFoundError(f"`model_name_or_path` {name}: no such model folder")
        return name
    from .toy import build_tiny_model

    arch, options = _toy_options(name)
    folder = Path(output_dir) / f"toy-{arch}"
    if not (folder / "config.json").is_file():
        build_tiny_model(folder, arch=arch, **{k: int(v) for k, v in options.items()})
    return str(folder)


def resolve_reference(data_args: DataArguments, training_args: ResonanceConfig) -> None:
    """A built-in `resonance_reference` source (`toy:math?...`, `gsm8k`) is written to
    <output_dir>/resonance_reference.parquet and the field pointed at it; paths and Hub ids stay as they are."""
    name = training_args.resonance_reference
    if not name or not (name.startswith("toy:") or name == "gsm8k"):
        return
    source = dataclasses.replace(data_args, dataset_name=name, max_rows=None)
    path = Path(training_args.output_dir) / "resonance_reference.parquet"
    write_parquet(load_rows(source), path)  # every process writes the same rows, atomically
    training_args.resonance_reference = str(path)


def make_trainer(
    data_args: DataArguments,
    training_args: ResonanceConfig,
    model_args: ModelConfig,
    train_dataset: Dataset | IterableDataset,
) -> ResonanceTrainer:
    model_init = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    training_args.model_init_kwargs = {**model_init, **(training_args.model_init_kwargs or {})}
    resolve_reference(data_args, training_args)
    return ResonanceTrainer(
        model=resolve_model(model_args.model_name_or_path, training_args.output_dir),
        args=training_args,
        train_dataset=train_dataset,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )


# ---- jobs --------------------------------------------------------------------------------------------------


def run_score(data_args: DataArguments, training_args: ResonanceConfig, model_args: ModelConfig) -> Path:
    """Score the train split; writes the scored rows (parquet, provenance in its metadata); returns the path.
    With `dataset_streaming`, the split is streamed and the scored rows go to a folder of parquet parts."""
    if data_args.dataset_streaming:
        if training_args.max_steps <= 0:  # Trainer asks a stream for a step count; scoring takes none
            training_args.max_steps = 1
        trainer = make_trainer(data_args, training_args, model_args, load_stream(data_args))
        folder = Path(data_args.scores_path or os.path.join(training_args.output_dir, "scored"))
        folder = folder.with_suffix("") if folder.suffix == ".parquet" else folder  # a recipe's file: its folder
        trainer.score(parts_dir=str(folder), max_rows=data_args.max_rows)
        return folder
    path = Path(data_args.scores_path or os.path.join(training_args.output_dir, "scored.parquet"))
    check_table_suffix(path)  # before the compute, not after it
    if data_args.dataset_name and Path(data_args.dataset_name).exists():
        check_not_input(data_args.dataset_name, path)
    trainer = make_trainer(data_args, training_args, model_args, load_rows(data_args))
    scored = trainer.score()
    if trainer.accelerator.is_main_process:
        write_table(scored, path, read_provenance(scored))
    return path


def check_not_input(source: str | os.PathLike, output: str | os.PathLike) -> None:
    """Refuse to write the output over its own input (a failed or partial run would lose the input)."""
    source, output = Path(source).expanduser().resolve(), Path(output).expanduser().resolve()
    if source == output or (source.is_dir() and source in output.parents):
        raise ValueError(f"the output {output} would overwrite the input {source}; write to another path.")


def run_select(source: str | os.PathLike, output: str | os.PathLike, **options) -> tuple[Path, dict]:
    """Select from a scored file with `select_by_resonance(**options)` into `output` (.parquet with the selection
    in its metadata, .jsonl or .csv); returns the path and the counts."""
    check_table_suffix(output)
    check_not_input(source, output)
    selected = select_by_resonance(load_scored(source), **options)
    provenance = read_provenance(selected)
    return write_table(selected, output, provenance), provenance["selection"]


def run_train(data_args: DataArguments, training_args: ResonanceConfig, model_args: ModelConfig) -> ResonanceTrainer:
    """Fine-tune on the train split (scoring as `resonance_when` says), save, and push if asked."""
    trainer = make_trainer(data_args, training_args, model_args, load_rows(data_args))
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:  # TRL's card (with the ResoFilter citation) and the scores file go up
        trainer.push_to_hub(dataset_name=data_args.dataset_name)
    if trainer.scored_dataset is not None and trainer.is_world_process_zero():
        write_checkpoint_card(
            training_args.output_dir, scored_dataset=trainer.scored_dataset, model_repo_id=trainer.hub_model_id
        )
    return trainer
