"""The private TRL / transformers / torch symbols this library leans on, in one place.

`ResonanceTrainer` reuses TRL's own dataset preparation and hooks into two `Trainer` internals, and the capture
hooks ask autograd whether they run inside a backward pass. None of these is public API, so each is looked up
here, once, and a version without it fails at construction with an error naming the symbol and the versions,
instead of an AttributeError deep inside a run.
"""

import functools
import importlib
from importlib.metadata import PackageNotFoundError, version


# "module:qualified.name" -> what it is used for
PRIVATE_SYMBOLS = {
    "trl:SFTTrainer._prepare_dataset": "TRL's own tokenization and loss masks, reused for scoring",
    "transformers:Trainer._set_signature_columns_if_needed": "keeping the row-id column through TRL's collator",
    "transformers:Trainer._save_checkpoint": "saving in-flight scores beside each checkpoint",
    "transformers:Trainer._get_output_dir": "finding the checkpoint folder being written",
    "torch:_C._current_graph_task_id": "telling a recomputation inside backward from a real forward",
}


class IncompatibleVersionError(RuntimeError):
    """A private symbol this library needs is missing from the installed version of its owner."""


def _versions() -> str:
    found = []
    for name in ("torch", "transformers", "trl"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


@functools.cache
def lookup(symbol: str):
    """The object named `symbol` ("module:qualified.name"), or an IncompatibleVersionError naming it."""
    module_name, _, qualified = symbol.partition(":")
    obj = importlib.import_module(module_name)
    for part in qualified.split("."):
        if not hasattr(obj, part):
            raise IncompatibleVersionError(
                f"resofilter-hf needs `{module_name}.{qualified}` ({PRIVATE_SYMBOLS.get(symbol, 'internal use')}), "
                f"which the installed versions do not have ({_versions()}). Install versions within the ranges "
                "in resofilter-hf's requirements."
            )
        obj = getattr(obj, part)
    return obj


def check_private_symbols() -> None:
    """Raise on the first missing private symbol (called once when a trainer is built)."""
    for symbol in PRIVATE_SYMBOLS:
        lookup(symbol)


def in_backward() -> bool:
    """True inside an autograd backward pass (e.g. a gradient-checkpointing recomputation)."""
    return lookup("torch:_C._current_graph_task_id")() != -1


def prepare_dataset(trainer, dataset, processing_class, args, formatting_func, name: str):
    """TRL's `SFTTrainer._prepare_dataset` on `dataset`, never packed."""
    return lookup("trl:SFTTrainer._prepare_dataset")(
        trainer, dataset, processing_class, args, False, formatting_func, name
    )
