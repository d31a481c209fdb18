"""An offline toy world: synthetic math problems with labelled flaws and a tiny causal LM built locally.

Names are imported on first use, so `from resofilter_hf.toy import make_math_problems` does not pay for
importing transformers.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes


_EXPORTS = {
    "DEFECTS": "flaws",
    "FLAWS": "flaws",
    "make_math_problems": "data",
    "make_test_problems": "data",
    "toy_corpus": "data",
    "ARCHITECTURES": "model",
    "build_tiny_model": "model",
    "cached_tiny_model": "model",
}

__all__ = [
    "ARCHITECTURES",
    "DEFECTS",
    "FLAWS",
    "build_tiny_model",
    "cached_tiny_model",
    "make_math_problems",
    "make_test_problems",
    "toy_corpus",
]


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # pragma: no cover
    from .data import make_math_problems, make_test_problems, toy_corpus
    from .flaws import DEFECTS, FLAWS
    from .model import ARCHITECTURES, build_tiny_model, cached_tiny_model
