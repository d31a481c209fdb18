"""GSM8K-style final answers: find the number a solution ends on and write it in one canonical form.

Standard library only: `evaluate` copies this file next to the metric script and imports it from its cache,
so the package (`resofilter_hf.evaluation.extract_final_answer`) and the metric share this one copy.

Rules (every rule is exact; no float rounding anywhere):

- The answer is the first number after the last ``####`` marker (whitespace after the marker optional).
  With ``fallback_to_last_number=True``, a text with no number after a marker answers with its last number.
  GSM8K's calculator annotations ``<<48/2=24>>`` are removed before searching.
- A number is an optional sign (``-``, ``+`` or the Unicode minus), then digits with optional comma
  thousands groups (``1,000``), an optional decimal part (``3.50``, ``.5``) or an integer fraction (``1/2``).
  A sign counts only when it touches the digits (or a ``$`` before them: ``-$5``) and does not follow a letter,
  digit or ``)``: ``3-5`` and ``3 - 5`` end on 5, ``(-5)`` and ``= -5`` on -5.
- Around the number, ``$``, ``%``, units, a trailing ``.`` and other text are ignored (``50%`` is 50).
- Canonical form, so that string equality is numeric equality: integers without sign for zero, commas or
  ``.0`` (``"3.0"``, ``"3"`` and ``"+3"`` give ``"3"``; ``"1,000"`` gives ``"1000"``; ``"-5"`` stays ``"-5"``);
  other terminating values as a plain decimal without trailing zeros (``"0.50"`` and ``"1/2"`` give ``"0.5"``);
  non-terminating fractions reduced (``"2/6"`` gives ``"1/3"``). A zero denominator is not a fraction
  (``"1/0"`` reads as 1).
- Not understood: mixed numbers (``1 1/2`` reads as 1), space-separated thousands, scientific notation.
"""

import re
from fractions import Fraction


_ANNOTATION = re.compile(r"<<[^<>]*>>")
_MARKER = re.compile(r"####")
_NUMBER = re.compile(
    r"(?:(?<![\w)])(?P<sign>[-+\u2212])\$?)?"  # a sign only where it cannot be a hyphen or a binary operator
    r"(?:(?P<num>[0-9]+)/(?P<den>[0-9]+)(?![.,]?[0-9])"  # integer fraction: 1/2
    r"|(?=\.?[0-9])(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)?(?:\.(?P<frac>[0-9]+))?)"  # 1,000 12 3.5 .5
)


def _numbers(text: str):
    """The numbers in `text`, in order, as exact fractions."""
    for match in _NUMBER.finditer(text):
        if match["num"] is not None:
            value = Fraction(int(match["num"]))
            if int(match["den"]) != 0:
                value /= int(match["den"])
        else:
            value = Fraction((match["int"] or "0").replace(",", "") + "." + (match["frac"] or "0"))
        yield -value if match["sign"] in ("-", "\u2212") else value


def canonical_number(value: Fraction) -> str:
    """One spelling per value: "3", "-5", "0.5", "1/3"."""
    if value.denominator == 1:
        return str(value.numerator)
    rest = value.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    if rest != 1:  # does not terminate in decimal
        return f"{value.numerator}/{value.denominator}"
    places = 0  # decimal places needed: the larger power of 2 or 5 in the denominator
    while (value * 10**places).denominator != 1:
        places += 1
    digits = str(abs(value * 10**places).numerator).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def extract_final_answer(text: str | None, *, fallback_to_last_number: bool = False) -> str | None:
    """The canonical final answer of a GSM8K-style solution, or None when it has none (see module docstring).

    >>> extract_final_answer("She pays 2 * $1,500 = $3,000.\\n#### $3,000.")
    '3000'
    >>> extract_final_answer("So the answer is 4.50", fallback_to_last_number=True)
    '4.5'
    """
    if not text:
        return None
    text = _ANNOTATION.sub(" ", text)
    markers = list(_MARKER.finditer(text))
    if markers:
        found = next(_numbers(text[markers[-1].end() :]), None)
        if found is not None:
            return canonical_number(found)
    if not fallback_to_last_number:
        return None
    last = None
    for last in _numbers(text):  # noqa: B007 -- the loop is how we reach the last one
        pass
    return None if last is None else canonical_number(last)


def final_answer_accuracy(
    predictions: list[str], references: list[str], *, fallback_to_last_number: bool = False
) -> dict[str, float]:
    """Share of `predictions` whose final answer equals their reference's ("accuracy"), and share in which a final
    answer was found ("extracted"). References may be full solutions or bare numbers (they always fall back to
    their last number); a reference without any number is an error naming its index."""
    if len(predictions) != len(references) or not references:
        raise ValueError(
            f"gsm8k_accuracy: {len(predictions)} predictions for {len(references)} references (need equal, >0)"
        )
    gold = [extract_final_answer(ref, fallback_to_last_number=True) for ref in references]
    missing = [i for i, answer in enumerate(gold) if answer is None][:5]
    if missing:
        raise ValueError(
            f"gsm8k_accuracy: no final answer in references at indices {missing}, e.g. {references[missing[0]]!r}"
        )
    found = [extract_final_answer(pred, fallback_to_last_number=fallback_to_last_number) for pred in predictions]
    correct = sum(answer is not None and answer == ref for answer, ref in zip(found, gold))
    return {"accuracy": correct / len(gold), "extracted": sum(answer is not None for answer in found) / len(found)}
