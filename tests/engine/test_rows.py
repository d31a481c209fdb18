"""Row checks before any compute: statuses for empty rows, errors naming the row and field, result-column claims,
and the status of one engine result."""

import math
import warnings

import pytest
from datasets import Dataset

from resofilter_hf.engine.rows import (
    check_rows,
    check_train_rows,
    claim_result_columns,
    mark_nonfinite,
)


def _chat(answer):
    return [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": answer}]


def test_empty_or_whitespace_text_rows_get_empty_text():
    ds = Dataset.from_dict({"text": ["2 + 2 = 4", "", "   \n\t", "\u3000", "x"]})
    assert check_rows(ds) == ["ok", "empty_text", "empty_text", "empty_text", "ok"]
    custom = Dataset.from_dict({"body": ["a", " "]})
    assert check_rows(custom, text_field="body") == ["ok", "empty_text"]


def test_empty_assistant_turns_get_empty_completion():
    ds = Dataset.from_dict({"messages": [_chat("4"), _chat(""), _chat("  \n")]})
    assert check_rows(ds) == ["ok", "empty_completion", "empty_completion"]
    conversational = Dataset.from_dict(
        {
            "prompt": [_chat("x")[:1], _chat("x")[:1]],
            "completion": [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": " "}]],
        }
    )
    assert check_rows(conversational) == ["ok", "empty_completion"]


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"prompt": ["a", "b"], "completion": ["c", None]}, r"^row 1: .*`completion` is None"),
        ({"prompt": [3, 7], "completion": ["c", "d"]}, r"^row 0: .*`prompt` is 3"),
        ({"text": ["a", "b", None]}, r"^row 2: `text` must be a string, got None"),
        ({"messages": [_chat("4"), [{"role": "user", "content": None}]]}, r"^row 1: `messages\[0\]\['content'\]`"),
    ],
)
def test_train_rows_fail_naming_the_row_and_field(columns, message):
    with pytest.raises(ValueError, match=message):
        check_train_rows(Dataset.from_dict(columns))


def test_train_rows_zero_rows_and_what_is_left_to_trl():
    with pytest.raises(ValueError, match=r"`train_dataset` has 0 rows \(columns \['prompt', 'completion'\]\)"):
        check_train_rows(Dataset.from_dict({"prompt": [], "completion": []}))
    check_train_rows(None)  # no train set (evaluation only): TRL's call
    check_train_rows(Dataset.from_dict({"question": ["q"], "answer": ["a"]}))  # a formatting_func's columns
    check_train_rows(Dataset.from_dict({"text": ["", "a"]}))  # empty rows train on nothing: no error


def test_score_column_may_not_take_a_user_column():
    with pytest.raises(ValueError, match=r"`resonance_column='answer'` is already a column of the dataset"):
        claim_result_columns(["prompt", "completion", "answer"], "answer")
    # unless an earlier scoring wrote it (the provenance names it)
    with pytest.warns(UserWarning, match=r"result columns \['answer'\]"):
        assert claim_result_columns(["prompt", "answer"], "answer", earlier_column="answer") == ["answer"]


def test_earlier_result_columns_are_replaced_with_a_warning_naming_them():
    columns = ["prompt", "completion", "resonance", "resonance_loss", "resonance_status", "resonance_note"]
    with pytest.warns(UserWarning, match=r"\['resonance', 'resonance_loss', 'resonance_status'\]") as caught:
        replaced = claim_result_columns(columns, "resonance")
    assert replaced == ["resonance", "resonance_loss", "resonance_status"]  # a user's `resonance_note` stays
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert claim_result_columns(["prompt", "completion"], "resonance") == []


def test_mark_nonfinite_only_touches_scored_rows_with_a_nan_or_inf():
    status = ["ok", "ok", "ok", "empty_completion", "ok"]
    score = [1e-5, math.inf, math.nan, math.nan, 2e-5]
    loss = [1.5, 1.0, 1.0, math.nan, math.nan]
    assert mark_nonfinite(status, score, loss) == [1, 2, 4]
    assert status == ["ok", "nonfinite", "nonfinite", "empty_completion", "nonfinite"]
    assert score[0] == 1e-5 and all(math.isnan(v) for v in score[1:])


def test_windowed_checks_name_the_row_by_its_index_in_the_whole_dataset():
    from resofilter_hf.engine.rows import check_rows_windowed

    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(20)]
    assert check_rows_windowed(Dataset.from_list(rows), "text", window_rows=8) == ["ok"] * 20
    rows[11]["completion"] = " "
    rows[13]["completion"] = None
    with pytest.raises(ValueError) as info:
        check_rows_windowed(Dataset.from_list(rows), "text", window_rows=8)
    assert str(info.value).startswith("row 13: ") and "completion" in str(info.value)
    rows[13]["completion"] = "a13"
    statuses = check_rows_windowed(Dataset.from_list(rows), "text", window_rows=8)
    assert statuses[11] == "empty_completion" and statuses.count("ok") == 19
