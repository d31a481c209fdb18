"""resofilter-hf: ResoFilter data selection for TRL/PEFT fine-tuning.

Score each SFT sample by how far one optimizer step on it alone would move the model's weights, keep the
samples that move them least. Heavy imports (torch, transformers, trl) happen on first attribute access, and so
does the offline toy world: `resofilter_hf.toy.make_math_problems(200)` works after `import resofilter_hf`.
"""

import importlib
from typing import TYPE_CHECKING


__version__ = "0.1.0.dev0"

# public name -> module that defines it (imported lazily, so `import resofilter_hf` stays cheap)
_EXPORTS = {
    "ResonanceConfig": "config",
    "ResonanceTrainer": "trainer",
    "select_by_resonance": "selection",
    "resonance_threshold": "selection",
    "publish_dataset": "hub.publish",
    "read_provenance": "provenance",
    "report": "hub.report",
}
SUBPACKAGES = ("toy",)  # reachable as attributes, imported on first access

__all__ = [
    "ResonanceConfig",
    "ResonanceTrainer",
    "__version__",
    "publish_dataset",
    "read_provenance",
    "report",
    "resonance_threshold",
    "select_by_resonance",
    "toy",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    if name in SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from . import toy
    from .config import ResonanceConfig
    from .hub.publish import publish_dataset
    from .hub.report import report
    from .provenance import read_provenance
    from .selection import resonance_threshold, select_by_resonance
    from .trainer import ResonanceTrainer
