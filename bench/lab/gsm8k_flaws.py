"""GSM8K solutions with injected, labelled flaws: real text carrying the toy world's defect kinds.

`inject_flaws` takes question/answer rows (GSM8K's own fields, as `gsm8k.load_gsm8k` gives them) and gives
prompt/completion rows with a ``flaw`` column. Exactly ``round(n * flaw_rate)`` rows are flawed, split over the
kinds by the toy world's rule (`toy.data`, largest remainder, seeded positions):

- ``wrong_step``: one intermediate calculator result (``<<48/2=24>>24``) is off by a small amount; every later
  annotation that uses a changed value is recomputed from it, so the error runs through to the ``####`` line.
- ``wrong_answer``: every step as written, the number on the ``####`` line changed.
- ``truncated``: the solution cut at a word boundary after its first line (within it, for one-line solutions) and
  before its ``####`` line.
- ``mismatched``: the correct solution of another row, with a different final answer.
- ``repetition``: the solution's first lines, then one line or a stock phrase over and over, never finishing.
- ``off_topic``: fluent text unrelated to the problem (the toy world's sentences).

Every flawed row is flawed for sure: its final answer differs from the true one, or it has none (``truncated``,
``repetition``, ``off_topic``). A row drawn for a flaw it cannot carry (``wrong_step`` on a solution with no
intermediate step whose change reaches the final answer with whole and finite values) swaps labels with the next
clean row that can (wrapping round), so the counts stay exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset

from resofilter_hf.evaluation import extract_final_answer
from resofilter_hf.toy.data import flaw_labels
from resofilter_hf.toy.flaws import off_topic_text, repetition_of

from .gsm8k_calc import annotations, numbers_in, parse_number, propagate, write_number


if TYPE_CHECKING:  # pragma: no cover
    from resofilter_hf.sweep import ProxySettings

__all__ = ["MAKERS", "inject_flaws", "warm_gsm8k_model"]

_MARK = "####"


def _split(solution: str) -> tuple[str, str]:
    """(reasoning, ``####`` line onwards); the reasoning is the whole text when there is no marker."""
    cut = solution.rfind(_MARK)
    return (solution, "") if cut < 0 else (solution[:cut], solution[cut:])


def _deltas(value: Fraction, rng: random.Random) -> list[Fraction]:
    """Small nonzero changes in the last written place of `value`, shuffled, keeping positive values positive."""
    unit = Fraction(1) if value.denominator == 1 else Fraction(1, 10 ** len(write_number(value).partition(".")[2]))
    offsets = [d for d in range(-12, 13) if d] + [m * d for m in (2, 3, 5) for d in (-10, 10)]
    rng.shuffle(offsets)
    return [d * unit for d in offsets if value <= 0 or value + d * unit > 0]


def _wrong_step(rows: Sequence[Mapping], i: int, rng: random.Random) -> str | None:
    question, solution = rows[i]["question"], rows[i]["answer"]
    truth = extract_final_answer(solution)
    found = annotations(solution)
    results = [parse_number(s.stated) for s in found]
    given = numbers_in(question)
    candidates = [
        k
        for k, step in enumerate(found[:-1])  # the last annotation is not intermediate
        if step.is_true() and results[k] not in given and results.count(results[k]) == 1
    ]
    for k in rng.sample(candidates, len(candidates)):
        for delta in _deltas(results[k], rng):
            wrong = results[k] + delta
            if wrong in given or wrong in results:
                continue
            changed = propagate(solution, k, wrong)
            if changed is not None and changed.recomputed and extract_final_answer(changed.text) not in (truth, None):
                return changed.text
    return None


def _wrong_answer(rows: Sequence[Mapping], i: int, rng: random.Random) -> str | None:
    reasoning, tail = _split(rows[i]["answer"])
    truth = extract_final_answer(rows[i]["answer"])
    if truth is None or "/" in truth:
        return None
    answer = Fraction(truth)
    options = [answer + d for d in range(-9, 10) if d and (answer <= 0 or answer + d > 0)]
    options += [answer * 2, answer * 10] if answer else []
    return reasoning + f"{_MARK} {write_number(rng.choice(options), tail)}"


def _truncated(rows: Sequence[Mapping], i: int, rng: random.Random) -> str | None:
    reasoning = _split(rows[i]["answer"])[0].rstrip()
    first = reasoning.find("\n")
    start = first if first > 0 else reasoning.find(" ") + 1  # one-line solutions: after the first word
    cuts = [j for j, ch in enumerate(reasoning) if ch in " \n" and j >= start and reasoning[:j].strip()]
    return reasoning[: rng.choice(cuts)].rstrip() if cuts else None


def _mismatched(rows: Sequence[Mapping], i: int, rng: random.Random) -> str | None:
    truth = extract_final_answer(rows[i]["answer"])
    others = [j for j in range(len(rows)) if j != i]
    for j in rng.sample(others, min(len(others), 50)):
        if rows[j]["question"] != rows[i]["question"] and extract_final_answer(rows[j]["answer"]) != truth:
            return rows[j]["answer"]
    return None


def _repetition(rows: Sequence[Mapping], i: int, rng: random.Random) -> str | None:
    lines = [line for line in _split(rows[i]["answer"])[0].splitlines() if line.strip()]
    return repetition_of(lines, rng) if lines else None


def _off_topic(rows: Sequence[Mapping], i: int, rng: random.Random) -> str | None:
    return off_topic_text(rng)


MAKERS: dict[str, Callable[[Sequence[Mapping], int, random.Random], str | None]] = {
    "wrong_step": _wrong_step,
    "wrong_answer": _wrong_answer,
    "truncated": _truncated,
    "mismatched": _mismatched,
    "repetition": _repetition,
    "off_topic": _off_topic,
}
"""Flaw kind -> maker(rows, row index, rng): the flawed completion, or None when the row cannot carry it."""


def inject_flaws(
    dataset: Dataset,
    *,
    flaw_rate: float = 0.3,
    seed: int = 0,
    flaw_mix: Mapping[str, float] | None = None,
) -> Dataset:
    """`dataset`'s question/answer rows as prompt/completion rows, exactly ``round(n * flaw_rate)`` of them flawed.

    Columns: ``prompt`` (the question and a newline), ``completion`` (the solution, flawed or as given),
    ``question`` and ``answer`` (as given), ``final_answer`` (the true one), ``flaw`` (``"none"`` or a key of
    `MAKERS`) and ``solution_of`` (the row whose solution the completion was made from: the row itself, or the
    other row for ``mismatched``). `flaw_mix` weighs the kinds (default: all six equally). The same `seed` gives
    the same rows. A row whose answer has no ``####`` final answer is refused (a flaw is certain only against one).
    """
    missing = [c for c in ("question", "answer") if c not in dataset.column_names]
    if missing:
        raise ValueError(f"inject_flaws: dataset lacks column(s) {missing}; it has {dataset.column_names}")
    rows = [{"question": q, "answer": a} for q, a in zip(dataset["question"], dataset["answer"])]
    labels = flaw_labels(len(rows), seed, flaw_rate, flaw_mix)
    completions = [row["answer"] for row in rows]
    truths = [extract_final_answer(row["answer"]) for row in rows]
    unanswered = [i for i, truth in enumerate(truths) if truth is None]
    if unanswered:  # a flaw is certain only against a known final answer
        raise ValueError(
            f"inject_flaws: {len(unanswered)} row(s) have no final answer (a '{_MARK} <number>' line) in column "
            f"'answer', e.g. row(s) {unanswered[:5]}; GSM8K solutions end in one"
        )
    for i in [i for i, flaw in enumerate(labels) if flaw != "none"]:
        flaw = labels[i]
        for j in [*range(i, len(rows)), *range(i)]:  # this row, else the next clean one (wrapping round)
            if j != i and labels[j] != "none":
                continue
            made = MAKERS[flaw](rows, j, random.Random(f"resofilter-gsm8k:{seed}:{flaw}:{j}"))
            if made is not None and extract_final_answer(made) != truths[j]:  # flawed for sure
                labels[i], labels[j] = labels[j], labels[i]
                completions[j] = made
                break
        else:
            raise ValueError(f"inject_flaws: no clean row of {len(rows)} can carry the flaw {flaw!r}")
    return Dataset.from_dict(
        {
            "prompt": [row["question"] + "\n" for row in rows],
            "completion": completions,
            "question": [row["question"] for row in rows],
            "answer": [row["answer"] for row in rows],
            "final_answer": truths,
            "flaw": labels,
            "solution_of": [_source(rows, completions, i, labels[i]) for i in range(len(rows))],
        }
    )


def _source(rows: Sequence[Mapping], completions: list[str], i: int, flaw: str) -> int:
    if flaw != "mismatched":
        return i
    return next(j for j, row in enumerate(rows) if j != i and row["answer"] == completions[i])


def warm_gsm8k_model(
    train: Dataset,
    warm_rows: Sequence[int],
    *,
    seed: int,
    work: str | Path,
    model: Mapping[str, int],
    vocab_size: int,
    warmup: ProxySettings,
) -> Path:
    """A tiny Llama whose tokenizer is trained on all of `train`'s question/answer text, warmed up on the
    `warm_rows` of `train` (`warmup`: a `sweep.ProxySettings`); the saved model's folder under `work`."""
    from resofilter_hf.demo.story_steps import warm_up
    from resofilter_hf.toy.model import build_tiny_model

    corpus = [q + "\n" + a for q, a in zip(train["question"], train["answer"])]
    base = build_tiny_model(Path(work) / "base", seed=seed, vocab_size=vocab_size, corpus=corpus, **model)
    return warm_up(base, train.select(warm_rows), warmup, seed, work)
