"""The confound report: how closely each score column follows completion length and loss.

A score that mostly ranks rows by length (the paper's score tends to fall as completions grow longer) or by loss
selects by those, whatever it was meant to measure. `score()` stores each score column's Spearman correlation with
the row's loss-token count and with its loss in the provenance, so cards and reports can show it next to the score.
"""

from collections.abc import Mapping

import numpy as np

from .columns import drop_side
from .engine.rows import ROW_ID


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the positions they span (the ranks Spearman's rho uses)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based position of each distinct value's first row, in sorted order
    return (first + (counts + 1) / 2)[inverse]


def spearman(a, b) -> float | None:
    """Spearman's rho over the rows where both are finite; None with fewer than 3 such rows or a constant side."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 3:
        return None
    ra, rb = average_ranks(a[both]), average_ranks(b[both])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else None


def confound_report(scores: Mapping[str, np.ndarray], length: np.ndarray, loss: np.ndarray | None) -> dict:
    """{score column: {"length": rho, "loss": rho, "n": rows with a score}} (rho None where undefined)."""
    report = {}
    for name, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        entry = {"length": spearman(values, length), "loss": spearman(values, loss) if loss is not None else None}
        report[name] = {**entry, "n": int(np.isfinite(values).sum())}
    return report


def loss_token_counts(prepare, dataset) -> np.ndarray:
    """Each row's loss-token count after the trainer's own preparation `prepare(rows)` (NaN for rows it drops):
    the length a score is computed on, for datasets that carry no `resonance_tokens` column (in-flight scores)."""
    n = len(dataset)
    prepared = prepare(dataset.add_column(ROW_ID, list(range(n))))
    counts = np.full(n, np.nan)
    for row_id, labels in zip(prepared[ROW_ID], prepared["labels"]):
        counts[row_id] = sum(label != -100 for label in labels[1:])
    return counts


class ConfoundWarning(UserWarning):
    """What a score measures on these rows: it mostly follows length or loss, or its loss covers the prompt too.
    (Filter this category to silence the verdicts; the CLI prints them as its closing headline instead.)"""


# What the loss covers when it falls on the prompt too, and the way out: the one wording of the warning, the
# report's and the card's headline.
LOSS_ON_PROMPT = (
    "The loss, and so every score, falls on the prompt's tokens too, not only on the answer's: these rows were "
    "scored as a whole (`messages` without an assistant mask, or `completion_only_loss=False`), so a score measures "
    "the question as much as the answer."
)
ANSWERS_ONLY = (
    "score the answers only: prompt/completion rows, or `messages` with a chat template that has generation "
    "markers (`{% generation %}`) and `assistant_only_loss=True`"
)

# |Spearman rho| at which a score is said to mostly rank rows by length (or loss). Measured: the paper's score on
# real model-written GSM8K solutions scored by SmolLM2-135M-Instruct, -0.76 with length (prompt/completion rows)
# and -0.95 (messages rows, loss on every token); on the toy demo's data about -0.25, and -0.5 on GSM8K text scored
# by tiny untrained models. 0.6 separates "selection is mostly length" from a score with a length tilt.
STRONG_RHO = 0.6
# Under that many scored rows a rank correlation is too noisy to call (its spread with no relation is about
# 1/sqrt(n-1): at 30 rows, 0.6 is three spreads out), so nothing is said.
STRONG_MIN_ROWS = 30
_AGAINST = {"length": ("longest", "shortest"), "loss": ("highest-loss", "lowest-loss")}
REMEDY = {  # the option that takes each confound out of a selection
    "length": 'select with `stratify_by="length"` (CLI: `--stratify-by length`) to compare rows of similar length only',
    "loss": 'select by the loss itself as well (`column="resonance_loss"`, CLI: `--column resonance_loss`) and '
    "compare before trusting the score over it",
}


def strong_confounds(report: Mapping[str, Mapping], score_column: str = "resonance") -> list[dict]:
    """The strong entries of a confound report (|rho| >= `STRONG_RHO` over `STRONG_MIN_ROWS` or more scored rows),
    each as {"column", "against", "rho", "sentence" (without the column),
    "text", "remedy"}: `text` says in plain words what keeping by the column amounts to (its drop side from
    `columns`), `remedy` the option that addresses it."""
    found = []
    for column, entry in report.items():
        if entry.get("n", 0) < STRONG_MIN_ROWS:
            continue
        for against, (high, low) in _AGAINST.items():
            rho = entry.get(against)
            if rho is None or not abs(rho) >= STRONG_RHO:
                continue
            kept_end = "lowest" if drop_side(column, score_column) == "highest" else "highest"
            follows_high = (rho > 0) == (kept_end == "highest")
            sentence = (
                f"has Spearman {rho:+.2f} with {'completion length' if against == 'length' else 'loss'} "
                f"({int(entry['n']):,} rows scored): "
                f"keeping the {kept_end} is close to keeping the {high if follows_high else low} rows"
            )
            found.append(
                {
                    "column": column,
                    "against": against,
                    "rho": float(rho),
                    "sentence": sentence,
                    "text": f"`{column}` {sentence}",
                    "remedy": REMEDY[against],
                }  # fmt: skip
            )
    return found
