"""GSM8K with injected flaws: exact label counts, seeded positions, and every flawed row really flawed; the
calculator-annotation evaluator and the propagation of a wrong step."""

import collections
from fractions import Fraction

import pytest
from datasets import Dataset

from resofilter_hf.evaluation import extract_final_answer
from resofilter_hf.evaluation.gsm8k import load_gsm8k

from lab.gsm8k_calc import annotations, evaluate, propagate
from lab.gsm8k_flaws import MAKERS, inject_flaws


# GSM8K-format rows (question, worked solution with calculator annotations, "#### answer")
ROWS = [
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many "
     "clips did Natalia sell altogether in April and May?",
     "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in "
     "April and May.\n#### 72"),
    ("Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she "
     "earn?",
     "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = "
     "$<<0.2*50=10>>10.\n#### 10"),
    ("Betty is saving money for a new wallet which costs $100. She has half of the money she needs. Her parents "
     "give her $15, and her grandparents twice as much as her parents. How much more money does Betty need?",
     "In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty's grandparents gave her 15 * 2 = "
     "$<<15*2=30>>30.\nThis means, Betty needs 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5"),
    ("Julie is reading a 120-page book. Yesterday she read 12 pages and today twice as many. If she wants to read "
     "half of the remaining pages tomorrow, how many pages should she read?",
     "Julie read 12 x 2 = <<12*2=24>>24 pages today.\nSo she read a total of 12 + 24 = <<12+24=36>>36 pages.\n"
     "There are 120 - 36 = <<120-36=84>>84 pages left.\nShe should read 84/2 = <<84/2=42>>42 pages.\n#### 42"),
    ("James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
     "He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every week\n"
     "That means he writes 12*52=<<12*52=624>>624 pages a year\n#### 624"),
    ("Mark has a garden with 10 yellow flowers and 80% more purple ones. There are 25% as many green flowers as "
     "yellow and purple together. How many flowers does Mark have?",
     "There are 80/100 * 10 = <<80/100*10=8>>8 more purple flowers than yellow flowers.\nSo there are 10 + 8 = "
     "<<10+8=18>>18 purple flowers.\nPurple and yellow together make 10 + 18 = <<10+18=28>>28 flowers.\nThere are "
     "25/100 * 28 = <<25/100*28=7>>7 green flowers.\nSo Mark has 28 + 7 = <<28+7=35>>35 flowers.\n#### 35"),
    ("Albert buys 2 large pizzas and 2 small pizzas. A large pizza has 16 slices and a small one 8. How many "
     "slices does he eat if he eats all of them?",
     "He eats 32 from the largest pizzas because 2 x 16 = <<2*16=32>>32\nHe eats 16 from the small pizza because "
     "2 x 8 = <<2*8=16>>16\nHe eats 48 pieces because 32 + 16 = <<32+16=48>>48\n#### 48"),
    ("Ken put a box on a scale and poured in enough jelly beans to bring the weight to 2 pounds, then tripled it "
     "with brownies, then added 2 pounds of jelly beans. What was the final weight?",
     "Tripled, the weight was 2*3=<<2*3=6>>6 pounds.\nWith more jelly beans it was 6+2=<<6+2=8>>8 pounds.\n#### 8"),
    ("Alexis had a budget of $200 and spent $30 on a shirt. How much does she have left?",
     "She has 200 - 30 = $<<200-30=170>>170 left.\n#### 170"),
    ("Tina makes $18.00 an hour and works 10 hours. How much does she make?",
     "She makes 18*10 = $<<18*10=180>>180.\n#### 180"),
]  # fmt: skip


def rows(n: int = len(ROWS)) -> Dataset:
    return Dataset.from_dict({"question": [q for q, _ in ROWS[:n]], "answer": [a for _, a in ROWS[:n]]})


def reasoning(text: str) -> str:
    return text.rpartition("####")[0] if "####" in text else text


def check_row(row: dict, others: list[str]) -> None:
    """Every property a row of `inject_flaws` must have, given the answers of all rows."""
    flaw, completion, answer = row["flaw"], row["completion"], row["answer"]
    assert row["prompt"] == row["question"] + "\n"
    assert row["final_answer"] == extract_final_answer(answer)
    if flaw == "none":
        assert completion == answer and row["solution_of"] == others.index(answer)
        return
    assert extract_final_answer(completion) != row["final_answer"], (flaw, completion)
    if flaw == "wrong_step":
        before, after = annotations(answer), annotations(completion)
        assert len(before) == len(after)
        differ = [
            k for k, (a, b) in enumerate(zip(before, after)) if (a.expression, a.stated) != (b.expression, b.stated)
        ]
        first = differ[0]
        assert before[first].is_true() and not after[first].is_true()  # the one wrong step, a true one before
        assert before[first].expression == after[first].expression  # same calculation, wrong result
        assert len(differ) >= 2 and all(after[k].is_true() for k in differ[1:])  # recomputed from the wrong value
        assert first < len(after) - 1
    elif flaw == "wrong_answer":
        assert reasoning(completion) == reasoning(answer) and "####" in completion
    elif flaw == "truncated":
        assert "####" not in completion and completion.strip()
        assert answer.startswith(completion) and answer[len(completion)] in " \n"
        assert len(completion) < len(reasoning(answer).rstrip())
    elif flaw == "mismatched":
        source = row["solution_of"]
        assert completion == others[source] and others[source] != answer
    elif flaw in ("repetition", "off_topic"):
        assert "####" not in completion
    else:
        raise AssertionError(f"unknown flaw {flaw!r}")


def test_counts_are_exact_and_split_evenly():
    data = rows()
    flawed = inject_flaws(data, flaw_rate=0.6, seed=3)  # 6 of 10 rows: one of each kind
    assert collections.Counter(flawed["flaw"]) == {"none": 4, **dict.fromkeys(MAKERS, 1)}
    mix = {"wrong_step": 1, "wrong_answer": 1, "truncated": 1, "mismatched": 1}
    four = inject_flaws(data, flaw_rate=0.4, seed=0, flaw_mix=mix)
    assert collections.Counter(four["flaw"]) == {"none": 6, **dict.fromkeys(mix, 1)}
    assert collections.Counter(inject_flaws(data, flaw_rate=0.0)["flaw"]) == {"none": 10}
    for row in [*flawed, *four]:
        check_row(row, list(data["answer"]))


def test_seeded_and_deterministic():
    data = rows()
    first, again = inject_flaws(data, flaw_rate=0.6, seed=5), inject_flaws(data, flaw_rate=0.6, seed=5)
    assert first.to_dict() == again.to_dict()
    others = [inject_flaws(data, flaw_rate=0.6, seed=s)["flaw"] for s in range(6, 12)]
    assert any(labels != first["flaw"] for labels in others)  # positions depend on the seed


def test_wrong_step_propagates_to_the_final_line():
    solution = ROWS[0][1]
    changed = propagate(solution, 0, Fraction(25))
    assert changed.text == (
        "Natalia sold 48/2 = <<48/2=25>>25 clips in May.\nNatalia sold 48+25 = <<48+25=73>>73 clips altogether in "
        "April and May.\n#### 73"
    )
    assert changed.changed == {24: 25, 72: 73} and changed.recomputed == ("48+25",)
    four = propagate(ROWS[3][1], 0, Fraction(20))  # 24 -> 20, so 36 -> 32, 84 -> 88, 42 -> 44
    assert [(s.expression, s.stated) for s in annotations(four.text)] == [
        ("12*2", "20"), ("12+20", "32"), ("120-32", "88"), ("88/2", "44")
    ]  # fmt: skip
    assert four.text.endswith("She should read 88/2 = <<88/2=44>>44 pages.\n#### 44")
    assert propagate(ROWS[3][1], 2, Fraction(85)) is None  # 85/2 is not a whole number of pages


def test_every_wrong_step_row_is_wrong_and_consistent():
    data = rows()
    for seed in range(8):
        flawed = inject_flaws(data, flaw_rate=0.5, seed=seed, flaw_mix={"wrong_step": 1})
        assert flawed["flaw"].count("wrong_step") == 5
        for row in flawed:
            check_row(row, list(data["answer"]))


def test_rows_without_an_intermediate_step_hand_the_flaw_on():
    one_step = {8, 9}  # a single annotation: nothing intermediate to change
    flawed = inject_flaws(rows(), flaw_rate=0.8, seed=1, flaw_mix={"wrong_step": 1})
    labels = flawed["flaw"]
    assert labels.count("wrong_step") == 8  # the count holds ...
    assert all(labels[i] == "none" for i in one_step)  # ... on the rows that can carry it
    single = Dataset.from_dict({"question": [ROWS[8][0]] * 3, "answer": [ROWS[8][1]] * 3})
    with pytest.raises(ValueError, match="no clean row of 3 can carry the flaw 'wrong_step'"):
        inject_flaws(single, flaw_rate=0.4, flaw_mix={"wrong_step": 1})


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['answer'\]"):
        inject_flaws(Dataset.from_dict({"question": ["q"]}))
    with pytest.raises(ValueError, match="flaw_rate must be in"):
        inject_flaws(rows(), flaw_rate=1.5)
    with pytest.raises(ValueError, match="unknown flaw"):
        inject_flaws(rows(), flaw_mix={"typo": 1})


def test_rows_without_a_final_answer_are_refused_by_row():
    unanswered = Dataset.from_dict(
        {"question": [q for q, _ in ROWS[:3]], "answer": [ROWS[0][1], "It is 3 + 4 = <<3+4=7>>7.", ROWS[2][1]]}
    )
    with pytest.raises(ValueError, match=r"1 row\(s\) have no final answer .* column 'answer', e\.g\. row\(s\) \[1\]"):
        inject_flaws(unanswered, flaw_rate=0.5)
    assert inject_flaws(unanswered.select([0, 2]), flaw_rate=0.5)["flaw"].count("none") == 1


def test_an_empty_dataset_gives_an_empty_one():
    empty = inject_flaws(Dataset.from_dict({"question": [], "answer": []}))
    assert len(empty) == 0 and "flaw" in empty.column_names


@pytest.mark.parametrize(
    "expression, value",
    [("48/2", 24), ("100 - 50 - 30 - 15", 5), ("3/4*20", 15), ("0.1+0.2", Fraction(3, 10)),
     ("-(2+3)*.5", Fraction(-5, 2)), ("+30+46", 76), ("10/3", Fraction(10, 3))],
)  # fmt: skip
def test_evaluator_is_exact(expression, value):
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression, reason",
    [("__import__('os').system('true')", "Call"), ("2**10", "BinOp"), ("a+1", "Name"), ("7//2", "BinOp"),
     ("(1).real", "Attribute"), ("[1][0]", "Subscript"), ("1 if 1 else 2", "IfExp"), ("'1'+'2'", "Constant"),
     ("True+1", "Constant"), ("1/0", "division by zero"), ("2 +", "not a calculator expression"),
     ("1+" * 150 + "1", "over 200 characters")],
)  # fmt: skip
def test_evaluator_refuses_anything_but_arithmetic(expression, reason):
    with pytest.raises(ValueError, match=reason):
        evaluate(expression)


def test_real_gsm8k_rows(gsm8k_dir):
    """600 real train rows: exact counts, and every property of every row (wrong steps consistent, etc.)."""
    data = load_gsm8k("train", path=gsm8k_dir).select(range(600))
    for seed in (0, 1):
        flawed = inject_flaws(data, seed=seed)
        assert collections.Counter(flawed["flaw"]) == {"none": 420, **dict.fromkeys(MAKERS, 30)}
        answers = list(data["answer"])
        for row in flawed:
            check_row(row, answers)


def test_repetition_and_off_topic_are_the_toy_worlds_own_generators():
    import random

    from resofilter_hf.toy.flaws import OFF_TOPIC_SENTENCES, off_topic_text, repetition_of

    data = [{"question": q, "answer": a} for q, a in ROWS]
    lines = [line for line in ROWS[0][1].split("####")[0].splitlines() if line.strip()]
    for seed in range(20):
        made = MAKERS["repetition"](data, 0, random.Random(seed))
        assert made == repetition_of(lines, random.Random(seed)) and "####" not in made
        text = MAKERS["off_topic"](data, 0, random.Random(seed))
        assert text == off_topic_text(random.Random(seed))
        assert 2 <= sum(sentence in text for sentence in OFF_TOPIC_SENTENCES) <= 4
