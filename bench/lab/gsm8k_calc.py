"""GSM8K's calculator annotations (``48/2 = <<48/2=24>>24``): read them, check them, and change one result so that
every later step follows from the changed value.

Expressions are parsed with `ast` and evaluated over exact fractions; only numbers, ``+ - * /``, unary signs and
parentheses are accepted (every annotation of GSM8K train is of that form), anything else is refused. Nothing is
ever passed to ``eval``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from resofilter_hf.evaluation.gsm8k_accuracy.final_answer import canonical_number


ANNOTATION = re.compile(
    r"<<(?P<expr>[^<>=]*)=(?P<result>[^<>=]*)>>(?P<shown>\d+(?:,\d{3})*(?:\.\d+)?(?!\d|,\d|\.\d))?"
)
_NUMBER = re.compile(r"(?<![\d.,])\d+(?:,\d{3})*(?:\.\d+)?(?!\d|,\d|\.\d)")
_MAX_EXPRESSION = 200  # characters; GSM8K's longest annotation is far shorter
_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
}


def evaluate(expression: str) -> Fraction:
    """The exact value of a small arithmetic expression; ValueError naming it for anything else (names, calls,
    powers, a zero divisor, text that does not parse)."""
    if len(expression) > _MAX_EXPRESSION:
        raise ValueError(f"not a calculator expression (over {_MAX_EXPRESSION} characters): {expression[:40]!r}...")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not a calculator expression: {expression!r} ({err.msg})") from None
    return _value(tree.body, expression)


def _value(node: ast.AST, expression: str) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(repr(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _value(node.operand, expression)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _value(node.left, expression), _value(node.right, expression)
        if isinstance(node.op, ast.Div):
            if right == 0:
                raise ValueError(f"division by zero in {expression!r}")
            return left / right
        if type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](left, right)
    raise ValueError(f"not a calculator expression: {expression!r} (refused: {type(node).__name__})")


def parse_number(text: str) -> Fraction:
    """A written number (``1,000``, ``3.50``) as an exact fraction."""
    return Fraction(text.replace(",", ""))


def terminates(value: Fraction) -> bool:
    """Whether `value` has a finite decimal expansion (so `write_number` spells it exactly)."""
    rest = value.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    return rest == 1


def write_number(value: Fraction, like: str = "") -> str:
    """`value` in decimal (it must terminate), with thousands commas when `like` (the number it replaces) had them."""
    text = canonical_number(value)
    if "," in like:
        whole, dot, frac = text.partition(".")
        text = f"{int(whole):,}" + dot + frac
    return text


@dataclass(frozen=True)
class Annotation:
    """One calculator annotation: its expression, the result it states, and where it sits in the text."""

    expression: str
    stated: str
    start: int
    end: int

    def is_true(self) -> bool:
        """Whether the stated result is the expression's exact value."""
        try:
            return evaluate(self.expression) == parse_number(self.stated)
        except (ValueError, ArithmeticError):
            return False


def annotations(solution: str) -> list[Annotation]:
    """Every annotation of `solution` whose stated result is a plain number, in order."""
    out = []
    for match in ANNOTATION.finditer(solution):
        stated = match["result"].strip()
        if _NUMBER.fullmatch(stated):
            out.append(Annotation(match["expr"], stated, match.start(), match.end()))
    return out


def numbers_in(text: str) -> set[Fraction]:
    """The values of the plain numbers written in `text`."""
    return {parse_number(m.group()) for m in _NUMBER.finditer(text)}


def substitute(text: str, changed: Mapping[Fraction, Fraction]) -> str:
    """`text` with every written number whose value is a key of `changed` replaced by its new value."""

    def replace(match: re.Match) -> str:
        value = parse_number(match.group())
        return write_number(changed[value], match.group()) if value in changed else match.group()

    return _NUMBER.sub(replace, text)


@dataclass(frozen=True)
class Propagated:
    """A solution after one changed step: the text, the values that changed (old -> new), and the annotations
    recomputed after the changed one (each true given the changed values)."""

    text: str
    changed: dict[Fraction, Fraction]
    recomputed: tuple[str, ...]


def propagate(solution: str, index: int, wrong: Fraction) -> Propagated | None:
    """`solution` with annotation `index` (of `annotations`) stating `wrong`, and every later step that uses a changed
    value recomputed from it (its expression, its result, the number shown after it, and numbers in the text after
    the change, the ``####`` line included). None when a recomputed value would not be a finite decimal, would
    turn a whole number into a fraction or a non-negative one negative, or a changed expression would not evaluate."""
    found = annotations(solution)
    target = found[index]
    changed: dict[Fraction, Fraction] = {parse_number(target.stated): wrong}
    pieces = [solution[: target.start], _annotation(target.expression, wrong, solution, target)]
    recomputed = []
    position = target.end
    for step in found[index + 1 :]:
        pieces.append(substitute(solution[position : step.start], changed))
        new_expression = substitute(step.expression, changed)
        if new_expression == step.expression:
            pieces.append(solution[step.start : step.end])
        else:
            try:
                value = evaluate(new_expression)
            except ValueError:
                return None
            old = parse_number(step.stated)
            if not terminates(value) or value < 0 <= old or (old.denominator == 1 and value.denominator != 1):
                return None
            if value != old:
                changed[old] = value
            pieces.append(_annotation(new_expression, value, solution, step))
            recomputed.append(new_expression)
        position = step.end
    pieces.append(substitute(solution[position:], changed))
    return Propagated("".join(pieces), changed, tuple(recomputed))


def _annotation(expression: str, value: Fraction, solution: str, step: Annotation) -> str:
    """``<<expression=value>>`` plus the shown copy of the result, if the original showed one."""
    shown = ANNOTATION.match(solution, step.start)["shown"]
    return f"<<{expression}={write_number(value)}>>" + ("" if shown is None else write_number(value, shown))
