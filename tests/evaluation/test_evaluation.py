"""GSM8K final-answer extraction, and the evaluate metric loaded offline from the package folder."""

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resofilter_hf.evaluation import GSM8K_ACCURACY_PATH, extract_final_answer, final_answer_accuracy


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),
        ("#### $1,000.", "1000"),
        ("#### 3.0", "3"),
        ("#### +3", "3"),
        ("#### -5", "-5"),
        ("#### -$5", "-5"),
        ("#### $-5", "-5"),
        ("#### \u22127", "-7"),
        ("#### -0", "0"),
        ("#### 0.50", "0.5"),
        ("#### .25", "0.25"),
        ("#### 1/2", "0.5"),
        ("#### 2/6", "1/3"),
        ("#### -4/6", "-2/3"),
        ("#### 50%", "50"),
        ("#### 1,234,567.80 dollars", "1234567.8"),
        ("####42", "42"),
        ("#### 5\n#### 6", "6"),  # the last marker wins
        ("#### 18 eggs and 2 hens", "18"),  # the first number after it
        ("#### 1 1/2", "1"),  # mixed numbers are not understood
        ("#### 1/0", "1"),  # a zero denominator is not a fraction
        ("the answer is 7", None),
        ("#### no number", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So she has 10-5 = 5 apples", "5"),  # a hyphen between numbers is not a sign
        ("The total is 3 - 5", "5"),
        ("The change is (-5)", "-5"),
        ("x = -12.", "-12"),
        ("答案是5", "5"),
        ("Calculator: <<2*3=6>>", None),  # annotations are not answers
        ("#### none, but I said 9 before", "9"),
        ("1,0001", "1"),  # not a thousands group: "1" then "0001"
        ("no digits", None),
    ],
)
def test_fallback_to_last_number(text, expected):
    assert extract_final_answer(text, fallback_to_last_number=True) == expected


def spellings(value: Fraction, data) -> str:
    """One of several ways to write `value` that the rules say mean it."""
    sign = "-" if value < 0 else data.draw(st.sampled_from(["", "+"]))
    magnitude = abs(value)
    choices = []
    if magnitude.denominator == 1:
        choices += [f"{magnitude.numerator:,}", f"{magnitude.numerator}.000", f"{magnitude.numerator}%"]
    places = next((k for k in range(12) if (magnitude * 10**k).denominator == 1), None)
    if places is not None:
        digits = str((magnitude * 10**places).numerator).rjust(places + 1, "0")
        whole, frac = (digits[:-places], digits[-places:]) if places else (digits, "")
        choices.append(f"${int(whole):,}.{frac}00")
    scale = data.draw(st.integers(1, 5))
    choices.append(f"{magnitude.numerator * scale}/{magnitude.denominator * scale}")
    return sign + data.draw(st.sampled_from(choices))


@settings(max_examples=300, deadline=None)
@given(
    value=st.fractions(max_denominator=64).filter(lambda f: abs(f) < 10**7)
    | st.integers(-(10**9), 10**9).map(Fraction),
    data=st.data(),
)
def test_equal_values_give_equal_answers(value, data):
    answer = extract_final_answer(f"... so the answer is\n#### {spellings(value, data)}.")
    assert Fraction(answer) == value  # the canonical text reads back as the same exact value
    assert answer == extract_final_answer(f"#### {spellings(value, data)}")


def test_gsm8k_references_read_as_their_integers(gsm8k_dir):
    rows = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines()]
    for row in rows:
        raw = row["answer"].split("#### ")[-1].strip()
        assert extract_final_answer(row["answer"]) == str(int(raw.replace(",", ""))), row["answer"]


_LOAD_OFFLINE = r"""
import json, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network access during an offline metric load")
socket.socket.connect = refuse
socket.create_connection = refuse
sys.modules["resofilter_hf"] = None  # the metric folder must not need the package
import evaluate
cases = json.loads(sys.stdin.read())
metric = evaluate.load(sys.argv[1])
out = {"module": type(metric).__module__}
for name, kwargs in cases.items():
    try:
        out[name] = metric.compute(**kwargs)
    except Exception as err:
        out[name] = f"{type(err).__name__}: {err}"
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def offline_results(tmp_path_factory):
    """Load the metric in a fresh process: hub offline, sockets refused, modules cache empty."""
    sample = ROOT / "tests" / "data" / "gsm8k" / "test.jsonl"  # the vendored sample of the real files
    references = [json.loads(line)["answer"] for line in sample.read_text().splitlines()[:50]]
    references += ["Half of 12 is <<12/2=6>>6.\n#### 6", "She pays $1,200 in all.\n#### 1,200", "#### -3"]
    cases = {
        "gsm8k_self": {"predictions": references, "references": references},
        "mixed": {
            "predictions": ["2 + 2 = 4\n#### 4", "I think 5", "#### 1,000.0", "#### 7", ""],
            "references": ["#### 4", "5", "#### 1000", "#### 8", "#### 3"],
        },
        "mixed_fallback": {
            "predictions": ["2 + 2 = 4\n#### 4", "I think 5", "#### 1,000.0", "#### 7", ""],
            "references": ["#### 4", "5", "#### 1000", "#### 8", "#### 3"],
            "fallback_to_last_number": True,
        },
        "bad_reference": {"predictions": ["1", "2"], "references": ["#### 1", "no answer here"]},
        "empty": {"predictions": [], "references": []},
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["HF_MODULES_CACHE"] = str(tmp_path_factory.mktemp("modules"))
    env["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_OFFLINE, GSM8K_ACCURACY_PATH],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path_factory.mktemp("cwd"),  # not the repo root: nothing importable by accident
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_metric_loads_offline_from_the_package_folder(offline_results):
    assert Path(GSM8K_ACCURACY_PATH, "gsm8k_accuracy.py").is_file()
    assert offline_results["module"].startswith("evaluate_modules.metrics.gsm8k_accuracy.")
    assert offline_results["gsm8k_self"] == {"accuracy": 1.0, "extracted": 1.0}


def test_metric_scores_and_counts_extractions(offline_results):
    # 4 and 1000 match; "I think 5" has no "####"; 7 != 8; "" has nothing
    assert offline_results["mixed"] == {"accuracy": 2 / 5, "extracted": 3 / 5}
    assert offline_results["mixed_fallback"] == {"accuracy": 3 / 5, "extracted": 4 / 5}


def test_metric_errors(offline_results):
    assert "no final answer in references at indices [1]" in offline_results["bad_reference"]
    assert "ValueError" in offline_results["empty"]


def test_package_import_stays_light():
    code = "import sys, resofilter_hf.evaluation; print(sorted(m for m in ('evaluate', 'torch') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert proc.stdout.strip() == "[]"


def test_final_answer_accuracy_counts_final_answers():
    """The one accuracy rule, shared by the evaluate metric and the lab's proxy evaluation."""
    generations = ["2 + 10 = 12\n#### 12", "#### 1,000 dollars", "I think 5", "#### 7"]
    scores = final_answer_accuracy(generations, ["12", "x is #### 1000", "5", "8"])
    assert scores == {"accuracy": 0.5, "extracted": 0.75}
    assert final_answer_accuracy(["I think 5"], ["5"], fallback_to_last_number=True) == {
        "accuracy": 1.0,
        "extracted": 1.0,
    }
    with pytest.raises(ValueError, match=r"gsm8k_accuracy: 3 predictions for 2 references \(need equal, >0\)"):
        final_answer_accuracy(["a", "b", "c"], ["1", "2"])
    with pytest.raises(ValueError, match=r"no final answer in references at indices \[1\], e.g. 'none'"):
        final_answer_accuracy(["1", "2"], ["#### 1", "none"])
