"""The toy generator: every flaw is what its label says, checked by a parser written here, not the generator's."""

import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from resofilter_hf.toy.data import make_math_problems, make_test_problems
from resofilter_hf.toy.flaws import DEFECTS, FLAWS, make_defect
from resofilter_hf.toy.problems import LEVELS


EQUATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
BINARY = re.compile(r"^(\d+)([-+*/])(\d+)$")
FINAL = re.compile(r"^#### (-?\d+)$")
PHRASE_LOOP = re.compile(r"\b(\w+(?: \w+)+)(?: \1){3,}")


def equations(text):
    """[(left, op, right, claimed result)] for every complete calculator annotation, in order."""
    out = []
    for expr, result in EQUATION.findall(text):
        m = BINARY.match(expr)
        assert m, f"unexpected annotation {expr!r}"
        out.append((int(m[1]), m[2], int(m[3]), Fraction(result)))
    return out


def is_true(eq):
    a, op, b, c = eq
    value = {"+": a + b, "-": a - b, "*": a * b, "/": Fraction(a, b) if b else None}[op]
    return value == c


def grounded(eqs, prompt):
    """Every operand is a number written in the prompt or the displayed result of an earlier equation."""
    known = {Fraction(x) for x in re.findall(r"\d+", prompt)}
    for a, _, b, c in eqs:
        if Fraction(a) not in known or Fraction(b) not in known:
            return False
        known.add(c)
    return True


def repeats(text):
    lines = text.split("\n")
    run = max((sum(1 for _ in g) for _, g in __import__("itertools").groupby(lines)), default=0)
    return run >= 3 or PHRASE_LOOP.search(text) is not None


def final_value(text):
    m = FINAL.match(text.split("\n")[-1])
    return m and m[1]


def classify(prompt, completion, answer):
    """The flaw a row shows, from its text alone."""
    if repeats(completion):
        return "repetition"
    if not re.search(r"\d", completion):
        return "off_topic"
    eqs = equations(completion)
    if final_value(completion) is None:
        return "truncated"
    if not grounded(eqs, prompt):
        return "mismatched"
    if not all(map(is_true, eqs)):
        return "wrong_step"
    if final_value(completion) != answer:
        return "wrong_answer"
    return "none"


@pytest.fixture(scope="module", params=["gsm", "basic"])
def level(request):
    return request.param


@pytest.fixture(scope="module")
def rows(level):
    return make_math_problems(1400, seed=3, flaw_rate=0.6, level=level)


@pytest.fixture(scope="module")
def clean(rows, level):
    """The same questions with no flaws (questions do not depend on the flaw settings)."""
    return make_math_problems(len(rows), seed=3, flaw_rate=0.0, level=level)


def test_columns_and_exact_counts(rows):
    assert rows.column_names == ["prompt", "completion", "answer", "flaw"]
    counts = Counter(rows["flaw"])
    assert sum(counts.values()) == 1400
    assert counts["none"] == 1400 - 840
    assert {f: counts[f] for f in DEFECTS} == dict.fromkeys(DEFECTS, 140)
    assert set(counts) == set(FLAWS)


def test_flaw_mix_and_rate_are_honoured():
    ds = make_math_problems(101, seed=1, flaw_rate=0.3, flaw_mix={"wrong_step": 2, "off_topic": 1})
    assert Counter(ds["flaw"]) == {"none": 71, "wrong_step": 20, "off_topic": 10}
    assert Counter(make_math_problems(50, flaw_rate=0.0)["flaw"]) == {"none": 50}
    assert Counter(make_math_problems(50, flaw_rate=1.0, flaw_mix={"truncated": 1})["flaw"]) == {"truncated": 50}


def test_every_row_shows_exactly_its_label(rows):
    wrong = [
        (i, r["flaw"], classify(r["prompt"], r["completion"], r["answer"]))
        for i, r in enumerate(rows)
        if classify(r["prompt"], r["completion"], r["answer"]) != r["flaw"]
    ]
    assert wrong == []


def test_none_rows_are_correct_solutions(rows):
    for r in rows.filter(lambda r: r["flaw"] == "none"):
        eqs = equations(r["completion"])
        assert 2 <= len(eqs) <= 5
        assert all(map(is_true, eqs)), r["completion"]
        assert grounded(eqs, r["prompt"])
        assert str(eqs[-1][3]) == r["answer"] == final_value(r["completion"])
        assert r["completion"].count("####") == 1


def test_templates_span_two_to_five_steps(clean, level):
    assert {len(equations(c)) for c in clean["completion"]} == ({2, 3, 4, 5} if level == "gsm" else {2})


def test_basic_steps_are_one_digit_facts():
    ops = Counter()
    for r in make_math_problems(1000, seed=3, flaw_rate=0.0, level="basic"):
        (a, op1, b, s), (s2, op2, c, t) = equations(r["completion"])
        assert 2 <= a <= 9 and 2 <= b <= 9 and 2 <= c <= 9 and op1 == "+" and s == s2 <= 9, r["completion"]
        assert {int(x) for x in re.findall(r"\d+", r["prompt"])} <= {a, b, c}  # the question holds only a, b, c
        ops[op2] += 1
    assert set(ops) == {"+", "*"} and min(ops.values()) > 200  # both kinds of second step, often


def test_wrong_step_has_one_false_intermediate_step_that_propagates(rows):
    for r in rows.filter(lambda r: r["flaw"] == "wrong_step"):
        eqs = equations(r["completion"])
        false = [k for k, eq in enumerate(eqs) if not is_true(eq)]
        assert len(false) == 1 and false[0] < len(eqs) - 1, r["completion"]
        assert grounded(eqs, r["prompt"])  # later steps use the wrong value as displayed
        assert final_value(r["completion"]) == str(eqs[-1][3]) != r["answer"]


def test_wrong_answer_keeps_right_steps(rows, clean):
    for i, r in enumerate(rows):
        if r["flaw"] != "wrong_answer":
            continue
        steps, last = r["completion"].rsplit("\n", 1)
        assert steps == clean[i]["completion"].rsplit("\n", 1)[0]
        assert FINAL.match(last) and final_value(r["completion"]) != r["answer"]


def test_truncated_is_a_strict_prefix_of_the_solution(rows, clean):
    for i, r in enumerate(rows):
        if r["flaw"] != "truncated":
            continue
        full = clean[i]["completion"]
        assert "####" not in r["completion"]
        assert full.startswith(r["completion"]) and len(r["completion"]) < full.index("####")
        assert equations(r["completion"]), "cut after the first line at the earliest"


def test_mismatched_is_a_correct_solution_of_another_question(rows, level):
    for r in rows.filter(lambda r: r["flaw"] == "mismatched"):
        eqs = equations(r["completion"])
        assert all(map(is_true, eqs)) and final_value(r["completion"]) == str(eqs[-1][3])
        assert level == "gsm" or (len(eqs) == 2 and eqs[0][0] <= 9), "another question of the same level"
        assert not grounded(eqs, r["prompt"])
        assert final_value(r["completion"]) != r["answer"]


def test_repetition_degenerates_and_never_ends(rows, clean):
    for i, r in enumerate(rows):
        if r["flaw"] != "repetition":
            continue
        assert repeats(r["completion"]) and "####" not in r["completion"]
        first = r["completion"].split("\n")[0]
        assert first in clean[i]["completion"].split("\n") or PHRASE_LOOP.match(first)


def test_off_topic_has_nothing_of_the_problem(rows):
    for r in rows.filter(lambda r: r["flaw"] == "off_topic"):
        c = r["completion"]
        assert not re.search(r"\d|####|<<", c)
        names = set(re.findall(r"\b[A-Z][a-z]+\b", r["prompt"])) - {
            "How",
            "The",
            "A",
            "Their",
            "He",
            "She",
            "His",
            "Her",
        }
        assert not names & set(re.findall(r"\w+", c)), (names, c)
        assert len(c.split()) >= 10 and c.endswith(".")


def test_clean_rows_never_look_repeated(clean):
    assert not any(repeats(c) for c in clean["completion"])


def test_seeded_and_reproducible(level):
    a = make_math_problems(80, seed=7, level=level)
    assert a.to_dict() == make_math_problems(80, seed=7, level=level).to_dict()
    assert a["prompt"] != make_math_problems(80, seed=8, level=level)["prompt"]
    assert len(set(a["prompt"])) == 80
    assert make_math_problems(80, seed=7, flaw_rate=0.0, level=level)["prompt"] == a["prompt"]
    assert Counter(make_math_problems(101, seed=7, flaw_rate=0.3, level=level)["flaw"])["none"] == 101 - 30


def test_levels_are_different_worlds():
    gsm, basic = (make_math_problems(200, seed=0, flaw_rate=0.0, level=lv) for lv in ("gsm", "basic"))
    assert not set(gsm["prompt"]) & set(basic["prompt"])
    assert max(len(c) for c in basic["completion"]) < min(max(len(c) for c in gsm["completion"]), 200)
    assert make_math_problems(50, seed=0)["prompt"] == gsm["prompt"][:50]  # the default level is "gsm"


def test_styles_hold_the_same_rows():
    text = make_math_problems(30, seed=2)
    conv = make_math_problems(30, seed=2, style="conversational")
    msgs = make_math_problems(30, seed=2, style="messages")
    assert conv.column_names == text.column_names and msgs.column_names == ["messages", "answer", "flaw"]
    for t, c, m in zip(text, conv, msgs):
        assert c["prompt"] == [{"role": "user", "content": t["prompt"].rstrip("\n")}]
        assert c["completion"] == [{"role": "assistant", "content": t["completion"]}]
        assert m["messages"] == c["prompt"] + c["completion"]
        assert t["prompt"].endswith("?\n")
        assert (t["answer"], t["flaw"]) == (c["answer"], c["flaw"]) == (m["answer"], m["flaw"])


def test_held_out_split_is_clean_and_disjoint(level):
    train = make_math_problems(400, seed=0, level=level)
    test = make_test_problems(300, seed=0, exclude=train["prompt"], level=level)
    assert set(test["flaw"]) == {"none"}
    assert not set(test["prompt"]) & set(train["prompt"])
    assert all(classify(r["prompt"], r["completion"], r["answer"]) == "none" for r in test)
    train_stream = make_math_problems(300, seed=0, flaw_rate=0, level=level)["prompt"]
    assert make_test_problems(300, seed=0, level=level)["prompt"] != train_stream
    first = make_test_problems(5, seed=0, level=level)["prompt"][0]
    assert first not in make_test_problems(5, seed=0, exclude=[first], level=level)["prompt"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flaw_mix": {"wrong_stp": 1}}, "wrong_stp"),
        ({"flaw_rate": 1.5}, "flaw_rate"),
        ({"flaw_mix": {"truncated": 0}}, "positive sum"),
        ({"style": "chat"}, "style"),
        ({"level": "hard"}, "level must be one of \\['basic', 'gsm'\\], got 'hard'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_math_problems(10, **kwargs)


@pytest.mark.parametrize("n", [2.5, True, -1, "10"])
def test_a_count_that_is_not_a_whole_number_is_named(n):
    with pytest.raises(ValueError, match=f"n must be a whole number >= 0, got {re.escape(repr(n))}"):
        make_math_problems(n)
    with pytest.raises(ValueError, match="n must be a whole number"):
        make_test_problems(n)


def test_every_defect_is_valid_on_every_template_of_every_level():
    for level, templates in LEVELS.items():
        for template in templates:
            for k in range(12):
                problem = template(random.Random(f"defects:{level}:{k}"))
                if problem.values() is None:
                    continue
                for flaw in DEFECTS:
                    completion = make_defect(flaw, problem, random.Random(f"defect:{k}"), templates)
                    shown = classify(problem.question, completion, str(problem.answer))
                    assert shown == flaw, (level, template.__name__, flaw, completion)


def test_a_level_out_of_distinct_questions_is_refused_not_looped_on(monkeypatch):
    import resofilter_hf.toy.data as data
    from resofilter_hf.toy.problems import Problem, Step

    def three_questions(rng):
        a = rng.randint(2, 4)
        return Problem(f"What is {a} + 5?", (Step("s", a, "+", 5, "It is {eq}."),))

    monkeypatch.setitem(data.LEVELS, "basic", (three_questions,))
    assert sorted(make_math_problems(3, flaw_rate=0.0, level="basic")["answer"]) == ["7", "8", "9"]
    with pytest.raises(ValueError, match=r"level 'basic' ran out of distinct questions: 3 of n=4 after \d+ draws"):
        make_math_problems(4, flaw_rate=0.0, level="basic")
    with pytest.raises(ValueError, match=r"ran out of distinct questions: 2 of n=3 .*\(1 excluded\)"):
        make_test_problems(3, exclude=["What is 2 + 5?\n"], level="basic")
