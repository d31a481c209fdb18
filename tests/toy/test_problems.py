"""Toy problems: solutions computed from the steps, errors that propagate, invalid draws refused."""

import random

from resofilter_hf.toy.problems import LEVELS, TEMPLATES, Problem, Step


SHOP = Problem(
    "Ava buys 3 pens for 4 dollars each and pays with 20 dollars. How much change does she get?",
    (
        Step("c", 3, "*", 4, "She spends {eq} dollars."),
        Step("r", 20, "-", "c", "She gets {eq} dollars back."),
    ),
)


def test_solution_is_computed_from_the_steps():
    assert SHOP.values() == [12, 8] and SHOP.answer == 8
    assert (
        SHOP.solution()
        == "She spends 3 * 4 = <<3*4=12>>12 dollars.\nShe gets 20 - 12 = <<20-12=8>>8 dollars back.\n#### 8"
    )


def test_an_error_propagates_to_later_steps():
    assert SHOP.values(error_at=0, delta=2) == [14, 6]  # later steps compute correctly from the wrong value
    assert SHOP.lines([14, 6])[1] == "She gets 20 - 14 = <<20-14=6>>6 dollars back."
    assert SHOP.values(error_at=0, delta=8) is None  # 20 - 20 = 0: not a positive result


def test_inexact_division_is_refused():
    halves = Problem("?", (Step("h", 7, "/", 2, "{eq}"),))
    assert halves.values() is None
    assert Problem("?", (Step("h", 8, "/", 2, "{eq}"),)).values() == [4]


def test_every_template_draws_valid_problems_from_its_rng():
    assert LEVELS["gsm"] is TEMPLATES and set(LEVELS) == {"gsm", "basic"}
    for template in [t for templates in LEVELS.values() for t in templates]:
        drawn = [template(random.Random(f"t:{k}")) for k in range(30)]
        valid = [p for p in drawn if p.values() is not None]
        assert valid, template.__name__
        assert [p.question for p in drawn] == [template(random.Random(f"t:{k}")).question for k in range(30)]
        for problem in valid:
            assert problem.solution().endswith(f"#### {problem.answer}") and problem.answer > 0
