"""The toy world's problems: GSM8K-style word problems whose solutions are computed, never written by hand.

A `Problem` is a question and its solution steps (``result = left op right``, operands literals from the question
or earlier results). `TEMPLATES` draw one problem each from a seeded rng; every number the solution uses is
written as a numeral in the question, and a problem whose steps leave the positive integers is redrawn.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a // b,
}


@dataclass(frozen=True)
class Step:
    """One solution line: ``result = left op right``; operands are literals or names of earlier results."""

    name: str
    left: int | str
    op: str
    right: int | str
    text: str  # a line with an ``{eq}`` slot, e.g. "She spends {eq} dollars on pens."


@dataclass(frozen=True)
class Problem:
    """A word problem and the steps that solve it; the solution text and the answer are computed from the steps."""

    question: str
    steps: tuple[Step, ...]

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


# ---- templates: every number the solution uses is written as a numeral in the question ------------------------

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


def _shopping(rng: random.Random) -> Problem:
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
        Step("c1", a, "*", p, f"{name} spends {{eq}} dollars on {item1}."),
        Step("c2", b, "*", q, f"{he.capitalize()} spends {{eq}} dollars on {item2}."),
        Step("c3", "c1", "+", "c2", f"In total {he} spends {{eq}} dollars."),
        Step("c4", bill, "-", "c3", f"So {he} gets {{eq}} dollars in change."),
    )
    return Problem(question, steps)


def _rates(rng: random.Random) -> Problem:
    vehicle = rng.choice(_VEHICLES)
    s1, h1, s2, h2 = rng.randint(8, 60), rng.randint(2, 6), rng.randint(8, 60), rng.randint(2, 6)
    question = (
        f"A {vehicle} travels at {s1} miles per hour for {h1} hours and then at {s2} miles per hour "
        f"for {h2} hours. How many miles does the {vehicle} travel in total?"
    )
    steps = (
        Step("d1", s1, "*", h1, f"In the first part the {vehicle} covers {{eq}} miles."),
        Step("d2", s2, "*", h2, "In the second part it covers {eq} miles."),
        Step("d3", "d1", "+", "d2", "Altogether it travels {eq} miles."),
    )
    return Problem(question, steps)


def _ages(rng: random.Random) -> Problem:
    name, he, his = rng.choice(_PEOPLE)
    relative = rng.choice(_RELATIVES)
    a, b, k, c = rng.randint(3, 15), rng.randint(2, 9), rng.randint(2, 4), rng.randint(2, 12)
    question = (
        f"{name} is {a} years old. {his.capitalize()} brother is {b} years older than {name}. "
        f"Their {relative} is {k} times as old as the brother. How old will the {relative} be in {c} years?"
    )
    steps = (
        Step("b", a, "+", b, "The brother is {eq} years old."),
        Step("m", "b", "*", k, f"The {relative} is {{eq}} years old now."),
        Step("f", "m", "+", c, f"In {c} years the {relative} will be {{eq}} years old."),
    )
    return Problem(question, steps)


def _sharing(rng: random.Random) -> Problem:
    name, he, his = rng.choice(_PEOPLE)
    things, containers = rng.choice(_THINGS), rng.choice(_CONTAINERS)
    k, per, g = rng.randint(2, 9), rng.randint(2, 12), rng.randint(2, 20)
    n = k * per + g
    question = (
        f"{name} has {n} {things}. {he.capitalize()} gives {g} of them to a friend and shares the rest equally "
        f"among {k} {containers}. How many {things} go into each of the {containers}?"
    )
    steps = (
        Step("r", n, "-", g, f"After the gift {name} has {{eq}} {things} left."),
        Step("e", "r", "/", k, f"Each of the {containers} gets {{eq}} {things}."),
    )
    return Problem(question, steps)


def _savings(rng: random.Random) -> Problem:
    name, he, his = rng.choice(_PEOPLE)
    w, h, k = rng.randint(8, 25), rng.randint(5, 20), rng.randint(2, 8)
    e = rng.randint(10, w * h - 5)
    question = (
        f"{name} earns {w} dollars an hour and works {h} hours a week. {he.capitalize()} spends {e} dollars "
        f"each week and saves the rest. How much does {he} save in {k} weeks?"
    )
    steps = (
        Step("p", w, "*", h, f"{name} earns {{eq}} dollars a week."),
        Step("s", "p", "-", e, f"{he.capitalize()} saves {{eq}} dollars a week."),
        Step("t", "s", "*", k, f"In {k} weeks {he} saves {{eq}} dollars."),
    )
    return Problem(question, steps)


def _bakery(rng: random.Random) -> Problem:
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
        Step("m", t, "*", c, f"The baker makes {{eq}} {food}."),
        Step("r", "m", "-", s, f"After the sales {{eq}} {food} are left."),
        Step("g", "r", "/", b, "That fills {eq} bags."),
    )
    return Problem(question, steps)


def _collection(rng: random.Random) -> Problem:
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
        Step("x1", a, "+", b, f"{name} has {{eq}} red and blue {things}."),
        Step("x2", "x1", "+", c, f"With the green ones that makes {{eq}} {things}."),
        Step("x3", d, "*", e, f"The packs hold {{eq}} {things}."),
        Step("x4", "x2", "+", "x3", f"After buying {he} has {{eq}} {things}."),
        Step("x5", "x4", "-", f, f"After the gift to {friend} {he} has {{eq}} {things}."),
    )
    return Problem(question, steps)


TEMPLATES = (_shopping, _rates, _ages, _sharing, _savings, _bakery, _collection)


# ---- the basic level: two short steps on single-digit operands, arithmetic a tiny model learns in minutes -------


def _digits(rng: random.Random) -> tuple[int, int, int]:
    """Three operands 2-9, the first two summing to at most 9, so every step is a one-digit fact."""
    a = rng.randint(2, 7)
    return a, rng.randint(2, 9 - a), rng.randint(2, 9)


@dataclass(frozen=True)
class _BasicForm:
    """One basic template: the words it draws (in order, after the person), its question, and its two lines.
    The first step is always ``a + b``; the second combines that sum with ``c`` by `op`."""

    name: str
    words: tuple[str, ...]
    question: str
    first: str
    op: str
    second: str

    def __call__(self, rng: random.Random) -> Problem:
        name, he, his = rng.choice(_PEOPLE)
        draws = {
            "friend": lambda: rng.choice([p for p in _PEOPLE if p[0] != name])[0],
            "things": lambda: rng.choice(_THINGS),
            "containers": lambda: rng.choice(_CONTAINERS),
            "goods": lambda: rng.choice(_GOODS),
        }
        words = {w: draws[w]() for w in self.words}
        a, b, c = _digits(rng)
        fill = dict(words, name=name, he=he, He=he.capitalize(), a=a, b=b, c=c, eq="{eq}")
        steps = (
            Step("s", a, "+", b, self.first.format(**fill)),
            Step("t", "s", self.op, c, self.second.format(**fill)),
        )
        return Problem(self.question.format(**fill), steps)

    @property
    def __name__(self) -> str:  # named as the function templates are
        return self.name


BASIC_TEMPLATES = (
    _BasicForm(
        "basic_boxes",
        ("things", "containers"),
        "{name} has {a} red {containers} and {b} blue {containers}. Each holds {c} {things}. "
        "How many {things} does {he} have?",
        "{He} has {eq} {containers}.",
        "*",
        "They hold {eq} {things}.",
    ),
    _BasicForm(
        "basic_pages",
        (),
        "{name} reads {a} pages in the morning and {b} at night. How many pages does {he} read in {c} days?",
        "{He} reads {eq} pages a day.",
        "*",
        "In {c} days that is {eq} pages.",
    ),
    _BasicForm(
        "basic_friends",
        ("friend", "things"),
        "{name} has {a} {things} and {friend} has {b}. {friend} gets {c} more. How many {things} do they have?",
        "First they have {eq} {things}.",
        "+",
        "Then they have {eq} {things}.",
    ),
    _BasicForm(
        "basic_shop",
        ("goods",),
        "{name} buys {a} {goods} and then {b} more. Each costs {c} dollars. How much does {he} spend?",
        "{He} buys {eq} {goods}.",
        "*",
        "They cost {eq} dollars.",
    ),
)


LEVELS = {"gsm": TEMPLATES, "basic": BASIC_TEMPLATES}
"""Problem sets by difficulty: "gsm" (two to five GSM8K-like steps, operands up to a few hundred) and "basic"
(two steps, each a one-digit + or * fact: about a hundred facts in all)."""
