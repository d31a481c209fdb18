"""The jobs behind `resofilter score | train` and the YAML recipes.

Arguments are TRL's own dataclasses (`ScriptArguments`, `ModelConfig`) plus `ResonanceConfig`, parsed by TRL's
`TrlParser`, so a recipe is the same YAML a `trl sft --config` run takes, with `resonance_*` keys added. Two
offline sources are built in: `model_name_or_path: toy:llama` (the tiny model factory) and
`dataset_name: toy:math?n=200&seed=0`. `gsm8k` is `openai/gsm8k` (config "main") as prompt/completion rows, from
the Hub or its offline cache, or from the folder RESOFILTER_GSM8K_DIR names. Anything else is a local file or
folder (parquet, JSON Lines or `save_to_disk`), or a Hub id loaded as usual.
"""

import contextlib
import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

from datasets import Dataset, DatasetDict, IterableDataset, load_dataset
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config, get_quantization_config

from ..config import ResonanceConfig
from ..engine.files import check_not_input, temporary_path
from ..hub.model_card import write_checkpoint_card
from ..provenance import (
    PARTS_DIR,
    TABLE_SUFFIXES,
    check_table_suffix,
    load_scored,
    read_provenance,
    write_parquet,
    write_table,
)
from ..trainer import ResonanceTrainer
from .usage import UsageError, closest, read_recipe, reads_negative_numbers, unknown_arguments, usage_errors


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

    def __post_init__(self):
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if self.max_rows is not None and self.max_rows < 1:  # read by the command line: a usage error
            raise ValueError(f"`max_rows` must be at least 1 (or left out for every row), got {self.max_rows}.")


class _RecipeParser(TrlParser):
    """TRL's parser, but a bad flag or value raises a one-line `UsageError` instead of printing the usage, and
    `-1e-5` is a value."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        reads_negative_numbers(self)

    def error(self, message: str):
        raise UsageError(message)


def parser(prog: str | None = None) -> TrlParser:
    """TRL's parser over every field of `DataArguments`, `ResonanceConfig` and `ModelConfig` (`--help-all`)."""
    usage = None if prog is None else "%(prog)s --config RECIPE.yaml [--FIELD VALUE ...]"
    return _RecipeParser((DataArguments, ResonanceConfig, ModelConfig), prog=prog, usage=usage)


def parse(argv: list[str]) -> tuple[DataArguments, ResonanceConfig, ModelConfig]:
    """Parse `--config recipe.yaml` plus command-line overrides, as `trl sft` does. A missing config, an unknown
    key or flag (with the closest known one) or a bad value is a `UsageError` naming the file, key or field."""
    recipe_parser = parser()
    argv = list(argv)
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise UsageError("--config needs a path to a YAML recipe")
        check_recipe(argv[at + 1], {action.dest for action in recipe_parser._actions})
    try:
        *parsed, extra = recipe_parser.parse_args_and_config(args=argv, return_remaining_strings=True)
    except UsageError:
        raise
    except (ValueError, TypeError) as err:  # a field's own check (__post_init__), named in the message
        raise UsageError(str(err)) from err
    if extra:
        known = ["--config", *(o for action in recipe_parser._actions for o in action.option_strings)]
        raise unknown_arguments(extra, known)
    return tuple(parsed)


def check_recipe(path: str, known: set[str]) -> None:
    """The recipe file exists, is a YAML mapping, and has only known keys (else the closest one is suggested)."""
    unknown = sorted(set(read_recipe(path)) - known - {"env"})
    if unknown:
        close = closest(unknown[0], known)
        hint = f"; did you mean {close!r}?" if close else ""
        raise UsageError(f"--config {path}: unknown key {unknown[0]!r}{hint}")


# ---- sources -----------------------------------------------------------------------------------------------


def _toy_options(uri: str) -> tuple[str, dict]:
    """`toy:<kind>?a=1&b=0.3&c=text` as ("<kind>", {"a": 1, "b": 0.3, "c": "text"})."""
    parsed = urlparse(uri)
    return parsed.path, {key: _number_or_text(value) for key, value in parse_qsl(parsed.query)}


def _number_or_text(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def load_rows(args: DataArguments, split: str | None = None) -> Dataset:
    """The rows of `args.dataset_name` (`split`, default the train split), capped at max_rows."""
    name = args.dataset_name
    if not name:
        raise UsageError("`dataset_name` is required: a Hub id, a local file or folder, 'gsm8k' or 'toy:math?n=...'.")
    split = split or args.dataset_train_split
    if name.startswith("toy:"):
        from ..toy import make_math_problems, make_test_problems

        kind, options = _toy_options(name)
        if kind != "math":
            raise UsageError(f"`dataset_name` {name}: unknown toy dataset {kind!r}; the toy world has 'math'.")
        n = int(options.pop("n", 200))
        dataset = make_test_problems(n, **options) if split == "test" else make_math_problems(n, **options)
    elif name == "gsm8k":
        from ..evaluation.gsm8k import load_gsm8k

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


STREAM_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}  # a local file, streamed


def load_stream(args: DataArguments, split: str | None = None) -> IterableDataset:
    """The rows of `args.dataset_name` as a stream: the local files `load_rows` reads (.parquet, .jsonl/.json and
    .csv through the matching builder; a `save_to_disk` or parts folder, memory-mapped), the built-in sources, or
    a Hub id (`load_dataset(..., streaming=True)`). `max_rows` is applied by the scoring."""
    name, split = args.dataset_name, split or args.dataset_train_split
    if not name:
        raise UsageError("`dataset_name` is required: a Hub id, a local file or folder, or 'toy:math?n=...'.")
    path = Path(name)
    if path.is_file() and path.suffix.lower() in STREAM_BUILDERS:
        return load_dataset(STREAM_BUILDERS[path.suffix.lower()], data_files=name, split="train", streaming=True)
    if name.startswith("toy:") or name == "gsm8k" or path.exists() or _looks_like_path(name):
        return load_rows(dataclasses.replace(args, max_rows=None), split).to_iterable_dataset()  # loaded as load_rows
    return load_dataset(name, name=args.dataset_config, split=split, streaming=True)


def resolve_model(name: str | None, output_dir: str) -> str:
    """A built-in tiny model (`toy:<arch>?seed=..&num_layers=..`, or `toy:llama-warm?seed=..`) built once into
    <output_dir>/toy-<arch>-<options>; anything else as is."""
    if not name:
        raise UsageError("`model_name_or_path` is required (a Hub id, a local folder, or 'toy:llama').")
    if not name.startswith("toy:"):
        if _looks_like_path(name) and not Path(name).expanduser().is_dir():
            raise FileNotFoundError(f"`model_name_or_path` {name}: no such model folder")
        return name
    arch, options = _toy_options(name)
    folder = Path(output_dir) / "-".join(["toy", arch, *(f"{k}{v}" for k, v in sorted(options.items()))])
    if not (folder / "config.json").is_file():
        building = temporary_path(folder)  # unique to this host, process, thread and call
        try:
            _build_toy_model(arch, options, building)
            _move_into_place(building, folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"`model_name_or_path` {name}: building it into {folder} failed")
    return str(folder)


def _move_into_place(building: Path, folder: Path) -> None:
    """Rename the finished build `building` to `folder`. A finished build already there (another process's,
    identical) is kept; an unfinished folder in the way is first moved to a name of our own, and deleted only if
    it is still unfinished there (a build finished in between is put back)."""
    for _ in range(3):
        try:
            os.rename(building, folder)
            return
        except OSError:
            if (folder / "config.json").is_file():
                return
        aside = temporary_path(folder)
        with contextlib.suppress(OSError):
            os.rename(folder, aside)
        if (aside / "config.json").is_file():  # it was finished by now: put it back
            with contextlib.suppress(OSError):
                os.rename(aside, folder)
        shutil.rmtree(aside, ignore_errors=True)


def _build_toy_model(arch: str, options: dict, folder: Path) -> None:
    """`llama-warm`: the demo's base model for `seed`, warmed up on clean problems of the basic world that are not
    in that seed's pool (`toy:math?n=800&seed=..&level=basic`), so its scores mean something; any other arch: an
    untrained `build_tiny_model` (its scores rank rows by chance)."""
    from ..toy import ARCHITECTURES, build_tiny_model

    if arch != "llama-warm":
        if arch not in ARCHITECTURES:
            raise UsageError(f"unknown toy model {arch!r}; choose from {[*sorted(ARCHITECTURES), 'llama-warm']}")
        build_tiny_model(folder, arch=arch, **{k: int(v) for k, v in options.items()})
        return
    from ..demo.settings import StorySettings
    from ..demo.story_steps import build_base, make_world, warm_up

    if set(options) - {"seed"}:
        raise UsageError(f"toy:llama-warm takes only seed=, got {sorted(options)}")
    seed, settings = int(options.get("seed", 0)), StorySettings.basic()
    base = build_base(settings, seed, folder / "base")
    warmed = warm_up(base, make_world(settings, seed)[0], settings.warmup, seed, folder / "work")
    for path in warmed.iterdir():
        os.replace(path, folder / path.name)
    shutil.rmtree(folder / "base")
    shutil.rmtree(folder / "work")


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
    output = scores_output(data_args, training_args)
    if data_args.dataset_streaming:
        if training_args.max_steps <= 0:  # Trainer asks a stream for a step count; scoring takes none
            training_args.max_steps = 1
        trainer = make_trainer(data_args, training_args, model_args, load_stream(data_args))
        trainer.score(parts_dir=str(output), max_rows=data_args.max_rows)
        return output
    trainer = make_trainer(data_args, training_args, model_args, load_rows(data_args))
    scored = trainer.score()
    if trainer.accelerator.is_main_process:
        write_table(scored, output, read_provenance(scored))
    return output


def scores_output(data_args: DataArguments, training_args: ResonanceConfig) -> Path:
    """Where `run_score` writes, checked before any compute: `scores_path`, else <output_dir>/scored.parquet (a
    stream's parts: a folder, default <output_dir>/scored/). A path of the wrong kind (a file for a stream's parts,
    a suffix no writer takes) or one that would overwrite the input is a usage error naming the path."""
    streaming = data_args.dataset_streaming
    default = PARTS_DIR if streaming else "scored.parquet"
    output = Path(data_args.scores_path or os.path.join(training_args.output_dir, default))
    if streaming and (output.suffix.lower() in (*TABLE_SUFFIXES, ".json") or output.is_file()):
        raise UsageError(
            f"`scores_path` {output}: with --streaming (dataset_streaming) the scored rows go to a folder of parquet "
            f"parts; give a folder, such as {output.with_suffix('')}, or score without --streaming for one file."
        )
    inputs = [data_args.dataset_name] if data_args.dataset_name and Path(data_args.dataset_name).exists() else []
    with usage_errors():
        if not streaming:
            check_table_suffix(output)
        check_not_input(output, inputs)
    return output


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
