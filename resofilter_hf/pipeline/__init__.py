"""The scoring pipeline: one path from rows (a `Dataset` or a stream) to scored rows, with every guarantee on both.

`ScoringSetup` is what the trainer hands down; `score_rows` and `scoring_losses` run on it (see `run`).
"""

from .results import loss_on_prompt
from .run import losses as scoring_losses
from .run import score as score_rows
from .setup import ScoringSettings, ScoringSetup, score_spec, scoring_provenance


__all__ = [
    "ScoringSettings",
    "ScoringSetup",
    "loss_on_prompt",
    "score_rows",
    "score_spec",
    "scoring_losses",
    "scoring_provenance",
]
