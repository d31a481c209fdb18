"""Seeded synthetic math word problems with labelled defects, so filtering can be tested without a download.

Each row is a GSM8K-style problem: a question, a step-by-step solution whose steps carry calculator annotations
(``3 * 4 = <<3*4=12>>12``) and a closing ``#### <answer>`` line. A share of rows (``flaw_rate``) carries one
realistic defect of machine-generated data, named in the ``flaw`` column:

- ``none``: every equation is true, every operand is a number from the question or an earlier result, and the
  ``####`` line holds the correct answer.
- ``wrong_step``: one intermediate equation is false; later steps compute correctly from the wrong value, so the
  error propagates to a wrong final answer.
- ``wrong_answer``: every step is right, but the ``####`` line states a different number.
- ``truncated``: the solution stops part-way, at a word boundary, with no ``####`` line.
- ``mismatched``: a correct solution of a different question (its numbers do not come from this one).
- ``repetition``: the solution starts right, then degenerates into a repeated line or phrase and never ends.
- ``off_topic``: fluent text that has nothing to do with the problem (no numbers, no equations).

Row ``i`` of ``make_math_problems(n, seed=s)`` depends only on ``s`` and the rows before it, never on the flaw
settings, so the same questions come back whatever ``flaw_rate`` is. Numbers are integers and every division is
exact. Questions within one call are unique.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Literal

from datasets import Dataset

from .flaws import DEFECTS, FLAWS, make_defect
from .problems import LEVELS, Problem


__all__ = [
    "DEFECTS",
    "FLAWS",
    "LEVELS",
    "Level",
    "Style",
    "flaw_labels",
    "make_math_problems",
    "make_test_problems",
    "toy_corpus",
]

Style = Literal["text", "conversational", "messages"]
Level = Literal["gsm", "basic"]


_MAX_DRAWS_PER_ROW = 1000  # far above what any level needs until its questions run out


def _templates(level: str):
    if level not in LEVELS:
        raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
    return LEVELS[level]


def _problems(n: int, namespace: str, seed: int, level: str, exclude: Iterable[str] = ()) -> list[Problem]:
    """`n` distinct valid problems; problem i uses its own string-seeded rng, so runs are reproducible."""
    templates = _templates(level)
    prefix = "resofilter-toy" if level == "gsm" else f"resofilter-toy-{level}"
    seen = set(exclude)
    out: list[Problem] = []
    draw = 0
    while len(out) < n:
        if draw >= _MAX_DRAWS_PER_ROW * (n + len(seen)):
            raise ValueError(
                f"level {level!r} ran out of distinct questions: {len(out)} of n={n} after {draw} draws "
                f"({len(seen) - len(out)} excluded); ask for fewer rows"
            )
        rng = random.Random(f"{prefix}:{namespace}:{seed}:{draw}")
        draw += 1
        problem = rng.choice(templates)(rng)
        if problem.values() is None or problem.question in seen:
            continue
        seen.add(problem.question)
        out.append(problem)
    return out


def flaw_labels(n: int, seed: int, flaw_rate: float, flaw_mix: Mapping[str, float] | None) -> list[str]:
    """The ``flaw`` label of each of `n` rows: exactly ``round(n * flaw_rate)`` defects, split over the kinds by
    `flaw_mix` (largest remainder; default all six equally), at positions seeded by `seed`. Shared with any data
    source that injects the same defect kinds, so their counts follow one rule."""
    if not 0.0 <= flaw_rate <= 1.0:
        raise ValueError(f"flaw_rate must be in [0, 1], got {flaw_rate}")
    mix = dict.fromkeys(DEFECTS, 1.0) if flaw_mix is None else dict(flaw_mix)
    unknown = sorted(set(mix) - set(DEFECTS))
    if unknown:
        raise ValueError(f"unknown flaw(s) in flaw_mix: {unknown}; choose from {list(DEFECTS)}")
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"flaw_mix weights must be >= 0 with a positive sum, got {mix}")
    n_flawed = round(n * flaw_rate)
    total = sum(mix.values())
    shares = {f: n_flawed * w / total for f, w in mix.items()}
    counts = {f: int(s) for f, s in shares.items()}
    for f in sorted(shares, key=lambda f: (counts[f] - shares[f], DEFECTS.index(f)))[
        : n_flawed - sum(counts.values())
    ]:
        counts[f] += 1
    labels = ["none"] * (n - n_flawed) + [f for f in DEFECTS for _ in range(counts.get(f, 0))]
    random.Random(f"resofilter-toy:flaws:{seed}").shuffle(labels)
    return labels


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")


def _as_rows(problems: list[Problem], labels: list[str], seed: int, style: Style, level: str) -> dict[str, list]:
    if style not in ("text", "conversational", "messages"):
        raise ValueError(f"style must be 'text', 'conversational' or 'messages', got {style!r}")
    rows: dict[str, list] = {"answer": [], "flaw": []}
    prompts, completions = [], []
    for i, (problem, flaw) in enumerate(zip(problems, labels)):
        rng = random.Random(f"resofilter-toy:defect:{seed}:{i}")
        completion = problem.solution() if flaw == "none" else make_defect(flaw, problem, rng, LEVELS[level])
        prompts.append(problem.question)
        completions.append(completion)
        rows["answer"].append(str(problem.answer))
        rows["flaw"].append(flaw)
    if style == "text":
        # the newline separates question and solution when a trainer concatenates prompt + completion
        head = {"prompt": [q + "\n" for q in prompts], "completion": completions}
    elif style == "conversational":
        head = {
            "prompt": [[{"role": "user", "content": q}] for q in prompts],
            "completion": [[{"role": "assistant", "content": c}] for c in completions],
        }
    else:
        head = {
            "messages": [
                [{"role": "user", "content": q}, {"role": "assistant", "content": c}]
                for q, c in zip(prompts, completions)
            ]
        }
    return {**head, **rows}


def make_math_problems(
    n: int,
    *,
    seed: int = 0,
    flaw_rate: float = 0.3,
    flaw_mix: Mapping[str, float] | None = None,
    style: Style = "text",
    level: Level = "gsm",
) -> Dataset:
    """`n` synthetic math word problems, about `flaw_rate` of them (exactly ``round(n * flaw_rate)``) flawed.

    Columns: ``prompt`` (the question, ending in a newline), ``completion`` (the solution), ``answer`` (the
    correct final answer, a string) and ``flaw`` (one of `FLAWS`). `flaw_mix` maps defect names to relative
    weights (default: all six equally). `style` picks the layout: ``"text"`` (strings), ``"conversational"``
    (prompt and completion as lists of role dicts, as TRL's conversational prompt-completion format) or
    ``"messages"`` (one ``messages`` column with the user and assistant turns instead of prompt/completion).
    `level` picks the problems (`LEVELS`): ``"gsm"`` (GSM8K-like, two to five steps) or ``"basic"`` (two steps
    on operands 2-9, learnable by a tiny model from a few thousand rows); the flaws are the same kinds.
    """
    _check_count(n)
    labels = flaw_labels(n, seed, flaw_rate, flaw_mix)
    return Dataset.from_dict(_as_rows(_problems(n, "train", seed, level), labels, seed, style, level))


def make_test_problems(
    n: int, *, seed: int = 0, exclude: Iterable[str] = (), style: Style = "text", level: Level = "gsm"
) -> Dataset:
    """`n` clean problems (flaw ``none``) of `level` for held-out accuracy, drawn from a stream separate from the
    training one; questions in `exclude` (prompts, with or without the trailing newline) are never drawn."""
    _check_count(n)
    excluded = {q.rstrip("\n") for q in exclude}
    problems = _problems(n, "test", seed, level, exclude=excluded)
    return Dataset.from_dict(_as_rows(problems, ["none"] * n, seed, style, level))


def toy_corpus(n: int = 2000, *, seed: int = 0, level: Level = "gsm") -> list[str]:
    """Text to train the toy tokenizer on: questions and completions of every flaw kind, of `level`."""
    ds = make_math_problems(n, seed=seed, flaw_rate=0.5, level=level)
    return [p + c for p, c in zip(ds["prompt"], ds["completion"])]
