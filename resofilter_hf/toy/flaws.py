"""The defects a share of toy rows carries: each takes a problem and a private rng and returns a flawed completion.

The kinds (see `FLAWS`) are those of machine-generated data: a false intermediate step that propagates, a wrong
final line, a truncated solution, another question's solution, a repetition loop, off-topic text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from .problems import TEMPLATES, Problem


FLAWS = ("none", "wrong_step", "wrong_answer", "truncated", "mismatched", "repetition", "off_topic")
DEFECTS = FLAWS[1:]


OFF_TOPIC_SENTENCES = [
    "The morning fog rolled slowly over the hills and settled in the quiet valley.",
    "Fresh basil grows best in a sunny window and should be watered every few days.",
    "The old lighthouse has guided ships along the rocky coast for generations.",
    "A good cup of tea depends as much on patience as on the leaves themselves.",
    "Many painters of the period preferred soft light and muted colors.",
    "The museum reopened its west wing after a long renovation.",
    "Migrating birds often rest on small islands before crossing the open sea.",
    "Her favorite novel follows a young sailor who dreams of distant harbors.",
    "Bread dough needs time to rise in a warm and draft-free place.",
    "The city council discussed plans for a new public library downtown.",
    "Autumn leaves turn red and gold as the days grow shorter.",
    "A well tuned piano can fill even a large hall with warm sound.",
    "Hiking trails in the national park are closed after heavy rain.",
    "The chess club meets on quiet evenings to study classic openings.",
    "Wool sweaters keep their shape longer when they are dried flat.",
    "The river widens near the town, where children skip stones in summer.",
]
"""Fluent sentences unrelated to any problem: the material of ``off_topic`` completions."""

LOOP_PHRASES = ["so the answer is", "and then we add", "let me check again", "which means that", "and so on and"]
"""Stock phrases a degenerate ``repetition`` completion loops on."""


def _with_wrong_step(problem: Problem, rng: random.Random) -> str:
    """One intermediate result off by a small amount; later steps compute correctly from it."""
    n = len(problem.steps)
    for k in rng.sample(range(n - 1), n - 1):  # the last step is not intermediate
        deltas = [d for d in range(-12, 13) if d] + [m * d for m in (2, 3, 5) for d in (-10, 10)]
        rng.shuffle(deltas)
        for delta in deltas:
            values = problem.values(error_at=k, delta=delta)
            if values is not None and values[-1] != problem.answer:
                return "\n".join([*problem.lines(values), f"#### {values[-1]}"])
    raise AssertionError(f"no wrong step possible for {problem.question!r}")  # every template admits one


def _with_wrong_answer(problem: Problem, rng: random.Random) -> str:
    answer = problem.answer
    wrong = rng.choice([answer + d for d in range(-9, 10) if d and answer + d > 0] + [answer * 2, answer * 10])
    return "\n".join([*problem.lines(problem.values()), f"#### {wrong}"])


def _truncated(problem: Problem, rng: random.Random) -> str:
    """The solution cut at a word boundary after its first line and before its ``####`` line."""
    lines = problem.lines(problem.values())
    body = "\n".join(lines)
    cuts = [i for i, ch in enumerate(body) if ch in " \n" and i >= len(lines[0])]
    return body[: rng.choice(cuts)].rstrip() if cuts else lines[0]


def repetition_of(lines: Sequence[str], rng: random.Random) -> str:
    """A solution's `lines` degenerating: up to a random line, then that line over and over, or from it on a stock
    phrase (`LOOP_PHRASES`) looping; it never reaches a ``####`` line."""
    lines = list(lines)
    k = rng.randrange(len(lines))
    if rng.random() < 0.5:  # one line over and over
        return "\n".join(lines[: k + 1] + [lines[k]] * rng.randint(4, 9))
    phrase = rng.choice(LOOP_PHRASES)
    return "\n".join([*lines[:k], " ".join([phrase] * rng.randint(6, 14))])


def off_topic_text(rng: random.Random) -> str:
    """Two to four of `OFF_TOPIC_SENTENCES`: fluent text with nothing of any problem in it."""
    return " ".join(rng.sample(OFF_TOPIC_SENTENCES, rng.randint(2, 4)))


def _repetition(problem: Problem, rng: random.Random) -> str:
    return repetition_of(problem.lines(problem.values()), rng)


def _off_topic(problem: Problem, rng: random.Random) -> str:
    return off_topic_text(rng)


def _numbers(text: str) -> set[int]:
    return {int(x) for x in re.findall(r"\d+", text)}


def _grounded(problem: Problem, question: str) -> bool:
    """Whether every operand of `problem`'s solution is a number in `question` or an earlier step's result."""
    known = _numbers(question)
    env: dict[str, int] = {}
    for step, c in zip(problem.steps, problem.values()):
        operands = [env[x] if isinstance(x, str) else x for x in (step.left, step.right)]
        if not set(operands) <= known:
            return False
        env[step.name] = c
        known.add(c)
    return True


def _mismatched(problem: Problem, rng: random.Random, templates: Sequence[Callable] = TEMPLATES) -> str:
    """The correct solution of another question (drawn from `templates`, the problem's own level) whose numbers
    are not all in this one, with another answer."""
    while True:
        other = rng.choice(templates)(rng)
        if other.values() and not _grounded(other, problem.question) and other.answer != problem.answer:
            return other.solution()


DEFECT_MAKERS: dict[str, Callable[[Problem, random.Random], str]] = {
    "wrong_step": _with_wrong_step,
    "wrong_answer": _with_wrong_answer,
    "truncated": _truncated,
    "mismatched": _mismatched,
    "repetition": _repetition,
    "off_topic": _off_topic,
}


def make_defect(flaw: str, problem: Problem, rng: random.Random, templates: Sequence[Callable] = TEMPLATES) -> str:
    """The completion of `problem` carrying defect `flaw`; a mismatched solution comes from `templates`."""
    if flaw == "mismatched":
        return _mismatched(problem, rng, templates)
    return DEFECT_MAKERS[flaw](problem, rng)
