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
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from datasets import Dataset


FLAWS = ("none", "wrong_step", "wrong_answer", "truncated", "mismatched", "repetition", "off_topic")
DEFECTS = FLAWS[1:]
Style = Literal["text", "conversational", "messages"]

_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a // b,
}


@dataclass(frozen=True)
class _Step:
    """One solution line: ``result = left op right``; operands are literals or names of earlier results."""

    name: str
    left: int | str
    op: str
    right: int | str
    text: str  # a line with an ``{eq}`` slot, e.g. "She spends {eq} dollars on pens."


@dataclass(frozen=True)
class _Problem:
    question: str
    steps: tuple[_Step, ...]

    def values(self, error_at: int | None = None, delta: int = 0) -> list[int] | None:
        """Each step's displayed result, with `delta` added at step `error_at`; None if a step is not a positive
        integer (a division that is not exact, a result at or below zero)."""
        env: dict[str, int] = {}
        out = []
        for k, step in enumerate(self.steps):
            a, b = (env[x] if isinstance(x, str) else x for x in (step.left, step.right))
            if step.op == "/" and (b == 0 or a % b):
                return None
            c = _OPS[step.op](a, b) + (delta if k == error_at else 0)
            if c <= 0:
                return None
            env[step.name] = c
            out.append(c)
        return out

    def lines(self, values: list[int]) -> list[str]:
        """The solution lines (no ``####`` line) that display `values` as the steps' results."""
        env: dict[str, int] = {}
        out = []
        for step, c in zip(self.steps, values):
            a, b = (env[x] if isinstance(x, str) else x for x in (step.left, step.right))
            expr = f"{a}{step.op}{b}"
            out.append(step.text.format(eq=f"{a} {step.op} {b} = <<{expr}={c}>>{c}"))
            env[step.name] = c
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1]

    def solution(self) -> str:
        return "\n".join([*self.lines(self.values()), f"#### {self.answer}"])


# ----------------------------------------------------------------------------------------------------------------
# Problem templates: every number the solution uses is written as a numeral in the question.

_PEOPLE = [
    ("Ava", "she", "her"),
    ("Ben", "he", "his"),
    ("Chloe", "she", "her"),
    ("Diego", "he", "his"),
    ("Emma", "she", "her"),
    ("Farid", "he", "his"),
    ("Grace", "she", "her"),
    ("Hiro", "he", "his"),
    ("Isla", "she", "her"),
    ("Jamal", "he", "his"),
    ("Keiko", "she", "her"),
    ("Liam", "he", "his"),
    ("Maya", "she", "her"),
    ("Noah", "he", "his"),
    ("Olivia", "she", "her"),
    ("Priya", "she", "her"),
]
_GOODS = ["notebooks", "pens", "apples", "books", "candles", "mugs", "shirts", "plants", "toys", "scarves"]
_VEHICLES = ["train", "bus", "truck", "boat", "car", "cyclist"]
_FOODS = ["cookies", "muffins", "rolls", "bagels", "cupcakes", "pretzels"]
_THINGS = ["stickers", "marbles", "cards", "shells", "stamps", "beads"]
_CONTAINERS = ["boxes", "jars", "bags", "baskets", "envelopes"]
_RELATIVES = ["mother", "father", "aunt", "uncle"]


def _shopping(rng: random.Random) -> _Problem:
    name, he, his = rng.choice(_PEOPLE)
    item1, item2 = rng.sample(_GOODS, 2)
    a, p, b, q = rng.randint(2, 9), rng.randint(2, 15), rng.randint(2, 9), rng.randint(2, 15)
    total = a * p + b * q
    bill = next(x for x in (20, 50, 100, 200, 500) if x > total)
    question = (
        f"{name} buys {a} {item1} for {p} dollars each and {b} {item2} for {q} dollars each. "
        f"{he.capitalize()} pays with {bill} dollars. How much change does {he} get?"
    )
    steps = (
        _Step("c1", a, "*", p, f"{name} spends {{eq}} dollars on {item1}."),
        _Step("c2", b, "*", q, f"{he.capitalize()} spends {{eq}} dollars on {item2}."),
        _Step("c3", "c1", "+", "c2", f"In total {he} spends {{eq}} dollars."),
        _Step("c4", bill, "-", "c3", f"So {he} gets {{eq}} dollars in change."),
    )
    return _Problem(question, steps)


def _rates(rng: random.Random) -> _Problem:
    vehicle = rng.choice(_VEHICLES)
    s1, h1, s2, h2 = rng.randint(8, 60), rng.randint(2, 6), rng.randint(8, 60), rng.randint(2, 6)
    question = (
        f"A {vehicle} travels at {s1} miles per hour for {h1} hours and then at {s2} miles per hour "
        f"for {h2} hours. How many miles does the {vehicle} travel in total?"
    )
    steps = (
        _Step("d1", s1, "*", h1, f"In the first part the {vehicle} covers {{eq}} miles."),
        _Step("d2", s2, "*", h2, "In the second part it covers {eq} miles."),
        _Step("d3", "d1", "+", "d2", "Altogether it travels {eq} miles."),
    )
    return _Problem(question, steps)


def _ages(rng: random.Random) -> _Problem:
    name, he, his = rng.choice(_PEOPLE)
    relative = rng.choice(_RELATIVES)
    a, b, k, c = rng.randint(3, 15), rng.randint(2, 9), rng.randint(2, 4), rng.randint(2, 12)
    question = (
        f"{name} is {a} years old. {his.capitalize()} brother is {b} years older than {name}. "
        f"Their {relative} is {k} times as old as the brother. How old will the {relative} be in {c} years?"
    )
    steps = (
        _Step("b", a, "+", b, "The brother is {eq} years old."),
        _Step("m", "b", "*", k, f"The {relative} is {{eq}} years old now."),
        _Step("f", "m", "+", c, f"In {c} years the {relative} will be {{eq}} years old."),
    )
    return _Problem(question, steps)


def _sharing(rng: random.Random) -> _Problem:
    name, he, his = rng.choice(_PEOPLE)
    things, containers = rng.choice(_THINGS), rng.choice(_CONTAINERS)
    k, per, g = rng.randint(2, 9), rng.randint(2, 12), rng.randint(2, 20)
    n = k * per + g
    question = (
        f"{name} has {n} {things}. {he.capitalize()} gives {g} of them to a friend and shares the rest equally "
        f"among {k} {containers}. How many {things} go into each of the {containers}?"
    )
    steps = (
        _Step("r", n, "-", g, f"After the gift {name} has {{eq}} {things} left."),
        _Step("e", "r", "/", k, f"Each of the {containers} gets {{eq}} {things}."),
    )
    return _Problem(question, steps)


def _savings(rng: random.Random) -> _Problem:
    name, he, his = rng.choice(_PEOPLE)
    w, h, k = rng.randint(8, 25), rng.randint(5, 20), rng.randint(2, 8)
    e = rng.randint(10, w * h - 5)
    question = (
        f"{name} earns {w} dollars an hour and works {h} hours a week. {he.capitalize()} spends {e} dollars "
        f"each week and saves the rest. How much does {he} save in {k} weeks?"
    )
    steps = (
        _Step("p", w, "*", h, f"{name} earns {{eq}} dollars a week."),
        _Step("s", "p", "-", e, f"{he.capitalize()} saves {{eq}} dollars a week."),
        _Step("t", "s", "*", k, f"In {k} weeks {he} saves {{eq}} dollars."),
    )
    return _Problem(question, steps)


def _bakery(rng: random.Random) -> _Problem:
    food = rng.choice(_FOODS)
    t, c, b, bags = rng.randint(2, 8), rng.randint(6, 24), rng.randint(2, 6), rng.randint(2, 10)
    made = t * c
    if made - b * bags <= 0:
        bags = max(1, (made - 1) // b)
    s = made - b * bags
    question = (
        f"A baker makes {t} trays of {food} with {c} {food} on each tray. The baker sells {s} of them and packs "
        f"the rest into bags of {b}. How many bags does the baker fill?"
    )
    steps = (
        _Step("m", t, "*", c, f"The baker makes {{eq}} {food}."),
        _Step("r", "m", "-", s, f"After the sales {{eq}} {food} are left."),
        _Step("g", "r", "/", b, "That fills {eq} bags."),
    )
    return _Problem(question, steps)


def _collection(rng: random.Random) -> _Problem:
    name, he, his = rng.choice(_PEOPLE)
    friend = rng.choice([p for p in _PEOPLE if p[0] != name])[0]
    things = rng.choice(_THINGS)
    a, b, c = (rng.randint(3, 30) for _ in range(3))
    d, e = rng.randint(2, 5), rng.randint(3, 12)
    f = rng.randint(2, a + b + c)
    question = (
        f"{name} has {a} red {things}, {b} blue {things} and {c} green {things}. {he.capitalize()} buys {d} packs "
        f"with {e} {things} in each pack and then gives {f} {things} to {friend}. "
        f"How many {things} does {name} have now?"
    )
    steps = (
        _Step("x1", a, "+", b, f"{name} has {{eq}} red and blue {things}."),
        _Step("x2", "x1", "+", c, f"With the green ones that makes {{eq}} {things}."),
        _Step("x3", d, "*", e, f"The packs hold {{eq}} {things}."),
        _Step("x4", "x2", "+", "x3", f"After buying {he} has {{eq}} {things}."),
        _Step("x5", "x4", "-", f, f"After the gift to {friend} {he} has {{eq}} {things}."),
    )
    return _Problem(question, steps)


_TEMPLATES = (_shopping, _rates, _ages, _sharing, _savings, _bakery, _collection)

_OFF_TOPIC = [
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
_LOOPS = ["so the answer is", "and then we add", "let me check again", "which means that", "and so on and"]


# ----------------------------------------------------------------------------------------------------------------
# Defects: each takes the problem and a private rng and returns the flawed completion.


def _with_wrong_step(problem: _Problem, rng: random.Random) -> str:
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


def _with_wrong_answer(problem: _Problem, rng: random.Random) -> str:
    answer = problem.answer
    wrong = rng.choice([answer + d for d in range(-9, 10) if d and answer + d > 0] + [answer * 2, answer * 10])
    return "\n".join([*problem.lines(problem.values()), f"#### {wrong}"])


def _truncated(problem: _Problem, rng: random.Random) -> str:
    """The solution cut at a word boundary after its first line and before its ``####`` line."""
    lines = problem.lines(problem.values())
    body = "\n".join(lines)
    cuts = [i for i, ch in enumerate(body) if ch in " \n" and i >= len(lines[0])]
    return body[: rng.choice(cuts)].rstrip() if cuts else lines[0]


def _repetition(problem: _Problem, rng: random.Random) -> str:
    lines = problem.lines(problem.values())
    k = rng.randrange(len(lines))
    if rng.random() < 0.5:  # one line over and over
        return "\n".join(lines[: k + 1] + [lines[k]] * rng.randint(4, 9))
    phrase = rng.choice(_LOOPS)
    return "\n".join([*lines[:k], " ".join([phrase] * rng.randint(6, 14))])


def _off_topic(problem: _Problem, rng: random.Random) -> str:
    return " ".join(rng.sample(_OFF_TOPIC, rng.randint(2, 4)))


def _numbers(text: str) -> set[int]:
    return {int(x) for x in re.findall(r"\d+", text)}


def _grounded(problem: _Problem, question: str) -> bool:
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


def _mismatched(problem: _Problem, rng: random.Random) -> str:
    """The correct solution of another question whose numbers are not all in this one, with another answer."""
    while True:
        other = rng.choice(_TEMPLATES)(rng)
        if other.values() and not _grounded(other, problem.question) and other.answer != problem.answer:
            return other.solution()


_DEFECT_MAKERS: dict[str, Callable[[_Problem, random.Random], str]] = {
    "wrong_step": _with_wrong_step,
    "wrong_answer": _with_wrong_answer,
    "truncated": _truncated,
    "mismatched": _mismatched,
    "repetition": _repetition,
    "off_topic": _off_topic,
}


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _problems(n: int, namespace: str, seed: int, exclude: Iterable[str] = ()) -> list[_Problem]:
    """`n` distinct valid problems; problem i uses its own string-seeded rng, so runs are reproducible."""
    seen = set(exclude)
    out: list[_Problem] = []
    draw = 0
    while len(out) < n:
        rng = random.Random(f"resofilter-toy:{namespace}:{seed}:{draw}")
        draw += 1
        problem = rng.choice(_TEMPLATES)(rng)
        if problem.values() is None or problem.question in seen:
            continue
        seen.add(problem.question)
        out.append(problem)
    return out


def _flaw_labels(n: int, seed: int, flaw_rate: float, flaw_mix: Mapping[str, float] | None) -> list[str]:
    """Exactly round(n * flaw_rate) defects, split by `flaw_mix` (largest remainder), at seeded positions."""
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


def _as_rows(problems: list[_Problem], labels: list[str], seed: int, style: Style) -> dict[str, list]:
    if style not in ("text", "conversational", "messages"):
        raise ValueError(f"style must be 'text', 'conversational' or 'messages', got {style!r}")
    rows: dict[str, list] = {"answer": [], "flaw": []}
    prompts, completions = [], []
    for i, (problem, flaw) in enumerate(zip(problems, labels)):
        rng = random.Random(f"resofilter-toy:defect:{seed}:{i}")
        completion = problem.solution() if flaw == "none" else _DEFECT_MAKERS[flaw](problem, rng)
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
) -> Dataset:
    """`n` synthetic math word problems, about `flaw_rate` of them (exactly ``round(n * flaw_rate)``) flawed.

    Columns: ``prompt`` (the question, ending in a newline), ``completion`` (the solution), ``answer`` (the
    correct final answer, a string) and ``flaw`` (one of `FLAWS`). `flaw_mix` maps defect names to relative
    weights (default: all six equally). `style` picks the layout: ``"text"`` (strings), ``"conversational"``
    (prompt and completion as lists of role dicts, as TRL's conversational prompt-completion format) or
    ``"messages"`` (one ``messages`` column with the user and assistant turns instead of prompt/completion).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    labels = _flaw_labels(n, seed, flaw_rate, flaw_mix)
    return Dataset.from_dict(_as_rows(_problems(n, "train", seed), labels, seed, style))


def make_test_problems(n: int, *, seed: int = 0, exclude: Iterable[str] = (), style: Style = "text") -> Dataset:
    """`n` clean problems (flaw ``none``) for held-out accuracy, drawn from a stream separate from the training
    one; questions in `exclude` (prompts, with or without the trailing newline) are never drawn."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    excluded = {q.rstrip("\n") for q in exclude}
    problems = _problems(n, "test", seed, exclude=excluded)
    return Dataset.from_dict(_as_rows(problems, ["none"] * n, seed, style))


def toy_corpus(n: int = 2000, *, seed: int = 0) -> list[str]:
    """Text to train the toy tokenizer on: questions and completions of every flaw kind."""
    ds = make_math_problems(n, seed=seed, flaw_rate=0.5)
    return [p + c for p, c in zip(ds["prompt"], ds["completion"])]
