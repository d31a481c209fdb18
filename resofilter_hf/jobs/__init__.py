"""The jobs behind `resofilter score | select | train` and the YAML recipes.

`recipes` parses a recipe with TRL's parser and runs `score` and `train` (it imports TRL and torch); `select` runs
`resofilter select` with the datasets stack alone; `usage` holds `UsageError` and the checks the command line runs
before importing anything heavy; `fields` the short `--help` of `score` and `train`. Names are imported on first
use, so `resofilter_hf.jobs.usage` costs nothing.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes


_EXPORTS = {
    "DataArguments": "recipes",
    "check_recipe": "recipes",
    "load_rows": "recipes",
    "load_stream": "recipes",
    "make_trainer": "recipes",
    "parse": "recipes",
    "parser": "recipes",
    "resolve_model": "recipes",
    "resolve_reference": "recipes",
    "run_score": "recipes",
    "run_train": "recipes",
    "run_select": "select",
    "UsageError": "usage",
    "usage_errors": "usage",
}

__all__ = [
    "DataArguments",
    "UsageError",
    "check_recipe",
    "load_rows",
    "load_stream",
    "make_trainer",
    "parse",
    "parser",
    "resolve_model",
    "resolve_reference",
    "run_score",
    "run_select",
    "run_train",
    "usage_errors",
]


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # pragma: no cover
    from .recipes import (
        DataArguments,
        check_recipe,
        load_rows,
        load_stream,
        make_trainer,
        parse,
        parser,
        resolve_model,
        resolve_reference,
        run_score,
        run_train,
    )
    from .select import run_select
    from .usage import UsageError, usage_errors
