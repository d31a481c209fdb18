"""resofilter-hf: ResoFilter data selection for TRL/PEFT fine-tuning.

Score each SFT sample by how far one optimizer step on it alone would move the model's weights, keep the
samples that move them least. Heavy imports (torch, transformers, trl) happen on first attribute access, and so
does the offline toy world: `resofilter_hf.toy.make_math_problems(200)` works after `import resofilter_hf`.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes


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


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, __all__, subpackages=SUBPACKAGES)


if TYPE_CHECKING:  # pragma: no cover
    from . import toy
    from .config import ResonanceConfig
    from .hub.publish import publish_dataset
    from .hub.report import report
    from .provenance import read_provenance
    from .selection import resonance_threshold, select_by_resonance
    from .trainer import ResonanceTrainer
