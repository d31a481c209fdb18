"""select_by_resonance and resonance_threshold against a brute-force reading of the paper's rule."""

import math

import numpy as np
import pytest
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from resofilter_hf.provenance import read_provenance, with_provenance
from resofilter_hf.selection import resonance_threshold, select_by_resonance


NAN = float("nan")


def make(scores, prompts=None, **columns):
    """A scored dataset; `id` records each row's input position."""
    prompts = prompts if prompts is not None else [f"q{i}" for i in range(len(scores))]
    return Dataset.from_dict({"id": list(range(len(scores))), "prompt": prompts, "resonance": scores, **columns})


def ids(ds):
    return list(ds["id"])


def oracle_firsts(prompts):
    return [i for i, p in enumerate(prompts) if p not in prompts[:i]]


def oracle(prompts, scores, keep_percent, drop="highest"):
    """The paper's rule, written out plainly: dedup, rank, drop ceil-complement, original order."""
    firsts = oracle_firsts(prompts)
    scored = [i for i in firsts if not math.isnan(scores[i])]
    sign = -1 if drop == "highest" else 1
    ranked = sorted(scored, key=lambda i: (sign * scores[i], i))
    n_keep = -(-len(scored) * keep_percent // 100)  # ceil(n * keep) in integers
    n_drop = len(scored) - n_keep
    return sorted(ranked[n_drop:]), sorted(ranked[:n_drop]), len(prompts) - len(firsts), len(firsts) - len(scored)


rows_strategy = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.sampled_from([0.1, 0.2, 0.3, 0.5, NAN])), min_size=0, max_size=40
)


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, keep_percent=st.integers(1, 100), drop=st.sampled_from(["highest", "lowest"]))
def test_matches_brute_force_rule(rows, keep_percent, drop):
    prompts = [p for p, _ in rows]
    scores = [s for _, s in rows]
    kept, dropped, n_dup, n_unscored = oracle(prompts, scores, keep_percent, drop)
    ds = make(scores, prompts)
    out = select_by_resonance(ds, keep_percent / 100, drop=drop)
    assert ids(out) == kept
    sel = read_provenance(out)["selection"]
    assert (sel["n_kept"], sel["n_dropped"], sel["n_duplicates"], sel["n_unscored"]) == (
        len(kept),
        len(dropped),
        n_dup,
        n_unscored,
    )
    assert sel["n_kept"] + sel["n_dropped"] + sel["n_duplicates"] + sel["n_unscored"] == sel["n_input"] == len(ds)
    assert sel["n_output"] == len(out)
    if kept:
        assert sel["threshold_value"] == (max if drop == "highest" else min)(scores[i] for i in kept)

    # the threshold reproduces the rule on the deduplicated rows, or explains why it cannot
    deduped = ds.select(oracle_firsts(prompts))
    straddles = bool(kept and dropped) and (
        max(scores[i] for i in kept) == min(scores[i] for i in dropped)
        if drop == "highest"
        else min(scores[i] for i in kept) == max(scores[i] for i in dropped)
    )
    if not kept:
        with pytest.raises(ValueError, match="no scored rows"):
            resonance_threshold(ds, keep_percent / 100, drop=drop)
    elif straddles:
        with pytest.raises(ValueError, match="share the score"):
            resonance_threshold(ds, keep_percent / 100, drop=drop)
    else:
        t = resonance_threshold(ds, keep_percent / 100, drop=drop)
        compare = (lambda r: r["resonance"] <= t) if drop == "highest" else (lambda r: r["resonance"] >= t)
        assert ids(deduped.filter(compare)) == kept


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, threshold=st.sampled_from([0.0, 0.1, 0.25, 0.3, 1.0]))
def test_threshold_mode_matches_brute_force(rows, threshold):
    prompts = [p for p, _ in rows]
    scores = [s for _, s in rows]
    expected = [i for i in oracle_firsts(prompts) if scores[i] <= threshold]
    out = select_by_resonance(make(scores, prompts), threshold=threshold)
    assert ids(out) == expected
    sel = read_provenance(out)["selection"]
    assert sel["threshold"] == threshold and sel["keep"] is None
    assert sel["n_kept"] + sel["n_dropped"] + sel["n_duplicates"] + sel["n_unscored"] == len(rows)


def test_ties_drop_the_lower_index_first():
    out = select_by_resonance(make([1.0, 1.0, 1.0, 1.0]), keep=0.5)
    assert ids(out) == [2, 3]
    out = select_by_resonance(make([1.0, 1.0, 1.0, 1.0]), keep=0.5, drop="lowest")
    assert ids(out) == [2, 3]


def test_hand_worked_example_and_original_order():
    # scores:        0    1    2    3    4    5    6    7
    scores = [0.5, 0.9, 0.1, 0.7, 0.9, 0.3, 0.2, 0.6]
    prompts = ["a", "b", "c", "a", "d", "e", "f", "g"]  # row 3 repeats row 0's prompt
    # unique rows 0,1,2,4,5,6,7 (7 rows); keep 0.5 keeps ceil(3.5) = 4; drop 0.9 (row 1), 0.9 (row 4), 0.6 (row 7)
    out = select_by_resonance(make(scores, prompts), keep=0.5)
    assert ids(out) == [0, 2, 5, 6]
    by_score = select_by_resonance(make(scores, prompts), keep=0.5, order="score")
    assert ids(by_score) == [2, 6, 5, 0]
    by_score = select_by_resonance(make(scores, prompts), keep=0.5, order="score", drop="lowest")
    assert ids(by_score) == [1, 4, 7, 0]


@pytest.mark.parametrize(("keep", "n", "n_kept"), [(0.9, 10, 9), (0.7, 10, 7), (0.1, 30, 3), (0.29, 100, 29)])
def test_keep_count_is_not_moved_by_float_error(keep, n, n_kept):
    # naive floor(n * (1 - 0.9)) with floats is floor(0.9999999999999998) = 0: nothing dropped
    out = select_by_resonance(make([float(i) for i in range(n)]), keep=keep)
    assert len(out) == n_kept
    assert ids(out) == list(range(n_kept))


def test_keep_one_keeps_everything_and_tiny_keep_keeps_one():
    assert len(select_by_resonance(make([3.0, 1.0, 2.0]), keep=1)) == 3
    assert ids(select_by_resonance(make([3.0, 1.0, 2.0]), keep=1e-9)) == [1]


def test_nan_modes():
    status = ["ok", "truncated", "ok", "empty_completion", "ok", "ok"]
    ds = make([0.4, NAN, 0.2, None, 0.9, 0.1], resonance_status=status)
    dropped = select_by_resonance(ds, keep=0.5)
    assert ids(dropped) == [2, 5]  # 4 scored rows, keep the 2 lowest
    kept = select_by_resonance(ds, keep=0.5, nan="keep")
    assert ids(kept) == [1, 2, 3, 5]
    sel = read_provenance(kept)["selection"]
    assert (sel["n_unscored"], sel["n_kept"], sel["n_dropped"], sel["n_output"]) == (2, 2, 2, 4)
    with pytest.raises(ValueError) as err:
        select_by_resonance(ds, keep=0.5, nan="error")
    assert "2 rows have no score" in str(err.value)
    assert "row 1 (resonance_status='truncated')" in str(err.value)
    assert "row 3 (resonance_status='empty_completion')" in str(err.value)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        select_by_resonance(make([0.1, NAN]), keep=0.5, nan="error")


def test_seed_breaks_ties_randomly_but_reproducibly():
    flat = make([1.0] * 40)
    a = ids(select_by_resonance(flat, keep=0.5, seed=1))
    assert a == ids(select_by_resonance(flat, keep=0.5, seed=1))
    assert a != list(range(20, 40)) and len(a) == 20
    assert a != ids(select_by_resonance(flat, keep=0.5, seed=2))
    distinct = make([float(x) for x in np.random.default_rng(0).permutation(40)])
    assert ids(select_by_resonance(distinct, keep=0.5, seed=3)) == ids(select_by_resonance(distinct, keep=0.5))


def test_stratify_by_length_keeps_the_share_in_every_bin():
    # ten completion lengths, ten rows each; the score grows with length, so an unstratified cut drops long rows
    lengths = [5 * (1 + i // 10) for i in range(100)]
    rng = np.random.default_rng(0)
    scores = [length + rng.random() for length in lengths]
    ds = make(scores, completion=["x" * n for n in lengths])
    plain = select_by_resonance(ds, keep=0.5)
    assert max(len(c) for c in plain["completion"]) == 25
    out = select_by_resonance(ds, keep=0.5, stratify_by="length")
    kept_ids = set(ids(out))
    for length in set(lengths):
        members = [i for i in range(100) if lengths[i] == length]
        lowest = sorted(members, key=lambda i: scores[i])[:5]
        assert {i for i in members if i in kept_ids} == set(lowest)
    sel = read_provenance(out)["selection"]
    assert sel["threshold_value"] is None
    assert [(s["stratum"], s["n"], s["n_kept"]) for s in sel["strata"]] == [
        ([n, n], 10, 5) for n in sorted(set(lengths))
    ]


def test_stratify_by_length_reads_messages_assistant_turns():
    chats = [
        [{"role": "user", "content": "u" * 50}, {"role": "assistant", "content": "a" * (1 + i % 2)}] for i in range(8)
    ]
    ds = Dataset.from_dict({"id": list(range(8)), "messages": chats, "resonance": [float(i) for i in range(8)]})
    out = select_by_resonance(ds, keep=0.5, stratify_by="length", dedup_on=None)
    # lengths 1 (even rows) and 2 (odd rows): keep the two lowest-scored of each
    assert ids(out) == [0, 1, 2, 3]
    assert [s["stratum"] for s in read_provenance(out)["selection"]["strata"]] == [[1, 1], [2, 2]]


def test_stratify_by_column_applies_share_per_group():
    source = ["a"] * 7 + ["b"] * 3 + ["c"]
    scores = [0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.4, 0.05, 0.06, 0.07, 0.5]
    out = select_by_resonance(make(scores, source=source), keep=0.5, stratify_by="source")
    # a: 7 rows keep ceil(3.5)=4 lowest (rows 1,5,3,6); b: 3 rows keep 2 (rows 7,8); c: keep its only row
    assert ids(out) == [1, 3, 5, 6, 7, 8, 10]
    strata = read_provenance(out)["selection"]["strata"]
    assert {s["stratum"]: (s["n"], s["n_kept"]) for s in strata} == {"a": (7, 4), "b": (3, 2), "c": (1, 1)}


def test_dedup_variants():
    scores = [0.1, 0.2, 0.3, 0.4]
    # conversational prompts compare by content
    chat = [[{"role": "user", "content": t}] for t in ["hi", "hi", "yo", "hi"]]
    assert ids(select_by_resonance(make(scores, chat), keep=1)) == [0, 2]
    # messages without a prompt column: duplicates are decided by the non-assistant turns only
    messages = [
        [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": str(i)},
        ]
        for i in range(3)
    ] + [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]]
    ds = Dataset.from_dict({"id": [0, 1, 2, 3], "messages": messages, "resonance": scores})
    out = select_by_resonance(ds, keep=1)
    assert ids(out) == [0, 3]
    # several columns, and no dedup at all
    ds = make(scores, ["p", "p", "p", "q"], source=["x", "y", "x", "x"])
    assert ids(select_by_resonance(ds, keep=1, dedup_on=["prompt", "source"])) == [0, 1, 3]
    assert ids(select_by_resonance(ds, keep=1, dedup_on="source")) == [0, 1]
    assert ids(select_by_resonance(ds, keep=1, dedup_on=None)) == [0, 1, 2, 3]
    # a null prompt is its own value, not the text "null"
    assert ids(select_by_resonance(make([0.1, 0.2], [None, "null"]), keep=1)) == [0, 1]


def test_input_untouched_output_has_every_column_and_provenance():
    ds = with_provenance(make([0.3, 0.1, 0.2, 0.1], ["a", "b", "a", "c"], extra=[1, 2, 3, 4]), scoring={"lr": 1e-5})
    before, description = ds.to_dict(), ds.info.description
    out = select_by_resonance(ds, keep=0.5)
    assert ds.to_dict() == before and ds.info.description == description
    assert out.column_names == ds.column_names
    prov = read_provenance(out)
    assert prov["scoring"] == {"lr": 1e-5}
    assert prov["selection"] == {
        "column": "resonance",
        "keep": 0.5,
        "threshold": None,
        "threshold_value": 0.1,
        "drop": "highest",
        "dedup_on": "prompt",
        "order": "original",
        "stratify_by": None,
        "nan": "drop",
        "seed": None,
        "n_input": 4,
        "n_duplicates": 1,
        "n_unscored": 0,
        "n_kept": 2,
        "n_dropped": 1,
        "n_output": 2,
    }


def test_works_on_views_formats_and_other_columns():
    ds = make([0.5, 0.1, 0.4, 0.2], score32=np.array([0.5, 0.1, 0.4, 0.2], dtype=np.float32), ints=[5, 1, 4, 2])
    view = ds.select([3, 2, 1, 0]).with_format("numpy")
    # the view holds ids 3, 2, 1, 0 (scores 0.2, 0.4, 0.1, 0.5): keep the two lowest, in the view's order
    assert ids(select_by_resonance(view, keep=0.5).with_format(None)) == [3, 1]
    assert ids(select_by_resonance(ds, keep=0.5, column="score32")) == [1, 3]
    assert ids(select_by_resonance(ds, keep=0.5, column="ints")) == [1, 3]
    empty = select_by_resonance(ds.select([]), keep=0.5)
    assert len(empty) == 0 and read_provenance(empty)["selection"]["n_input"] == 0


def test_threshold_refuses_a_tie_across_the_cut():
    ds = make([3.0, 2.0, 2.0, 1.0])
    with pytest.raises(ValueError) as err:
        resonance_threshold(ds, keep=0.5)
    assert "2 rows share the score 2.0" in str(err.value)
    assert "select_by_resonance" in str(err.value)
    assert resonance_threshold(ds, keep=0.75) == 2.0
    with pytest.raises(ValueError, match="2 rows share the score 2.0"):
        resonance_threshold(ds, keep=0.5, drop="lowest")
    assert resonance_threshold(ds, keep=0.25, drop="lowest") == 3.0
    with pytest.raises(ValueError, match="no scored rows"):
        resonance_threshold(make([NAN, NAN]), keep=0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep": 0.5, "column": "score"}, "column='score' is not a column; columns present: ['id', 'prompt'"),
        ({"keep": 0.5, "column": "prompt"}, "column='prompt' holds string, not numbers"),
        ({"keep": 0}, "keep=0 must satisfy 0 < keep <= 1"),
        ({"keep": 1.5}, "keep=1.5 must satisfy 0 < keep <= 1"),
        ({"keep": NAN}, "keep=nan must satisfy 0 < keep <= 1"),
        ({"keep": True}, "keep=True must be a number"),
        ({"keep": "half"}, "keep='half' must be a number"),
        ({}, "give exactly one of keep="),
        ({"keep": 0.5, "threshold": 0.2}, "give exactly one of keep="),
        ({"threshold": NAN}, "threshold=nan must be a number"),
        ({"keep": 0.5, "drop": "top"}, "drop='top' is not one of 'highest', 'lowest'"),
        ({"keep": 0.5, "order": "random"}, "order='random' is not one of 'original', 'score'"),
        ({"keep": 0.5, "nan": "skip"}, "nan='skip' is not one of 'drop', 'keep', 'error'"),
        ({"keep": 0.5, "seed": 1.5}, "seed=1.5 must be None or an int"),
        ({"keep": 0.5, "stratify_by": "topic"}, "stratify_by='topic' is not None, 'length' or a column"),
        ({"keep": 0.5, "stratify_by": "length"}, "stratify_by='length' needs a 'completion', 'messages' or 'text'"),
        ({"threshold": 0.5, "stratify_by": "id"}, "stratify_by='id' needs keep="),
        (
            {"keep": 0.5, "dedup_on": "question"},
            "dedup_on='question' is not 'prompt', None (CLI: none), or the name(s)",
        ),
        ({"keep": 0.5, "dedup_on": ["prompt", "x"]}, "dedup_on=['prompt', 'x'] is not 'prompt', None"),
    ],
)
def test_errors_name_the_option(kwargs, message):
    with pytest.raises(ValueError) as err:
        select_by_resonance(make([0.1, 0.2]), **kwargs)
    assert message in str(err.value)


def test_dedup_prompt_without_prompt_or_messages_names_columns():
    ds = Dataset.from_dict({"question": ["a"], "answer": ["b"], "resonance": [0.1]})
    with pytest.raises(ValueError) as err:
        select_by_resonance(ds, keep=0.5)
    assert "dedup_on='prompt' needs a 'prompt' or 'messages' column" in str(err.value)
    assert "['question', 'answer', 'resonance']" in str(err.value)
    assert ids(select_by_resonance(ds.add_column("id", [0]), keep=0.5, dedup_on="question")) == [0]


def test_public_exports():
    import resofilter_hf

    assert resofilter_hf.select_by_resonance is select_by_resonance
    assert resofilter_hf.resonance_threshold is resonance_threshold


def test_each_column_is_selected_in_its_own_direction_by_default():
    """One registry of directions (`resofilter_hf.columns`): alignment drops its lowest rows, the paper's score
    and the baselines their highest; the default column is the one the provenance names."""
    ds = Dataset.from_dict(
        {
            "prompt": [f"q{i}" for i in range(6)],
            "paper": [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
            "resonance_alignment": [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
            "baseline_loss": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    ds = with_provenance(ds, scoring={"column": "paper"})
    assert select_by_resonance(ds, keep=0.5)["prompt"] == ["q3", "q4", "q5"]  # column "paper", highest dropped
    aligned = select_by_resonance(ds, keep=0.5, column="resonance_alignment")
    assert aligned["prompt"] == ["q0", "q1", "q2"] and read_provenance(aligned)["selection"]["drop"] == "lowest"
    assert select_by_resonance(ds, keep=0.5, column="baseline_loss")["prompt"] == ["q0", "q1", "q2"]
    assert select_by_resonance(ds, keep=0.5, column="resonance_alignment", drop="highest")["prompt"] == [
        "q3",
        "q4",
        "q5",
    ]


def test_a_file_selected_by_alignment_keeps_alignments_direction():
    """A selected file whose provenance names only the alignment column (no scoring section): the declared
    direction of alignment still holds (the fixed columns are never read as the paper's score)."""
    ds = Dataset.from_dict({"prompt": [f"q{i}" for i in range(4)], "resonance_alignment": [0.4, 0.3, 0.2, 0.1]})
    ds = with_provenance(ds, selection={"column": "resonance_alignment", "keep": 1.0})
    kept = select_by_resonance(ds, keep=0.5)
    assert kept["prompt"] == ["q0", "q1"] and read_provenance(kept)["selection"]["drop"] == "lowest"


def test_a_dataset_without_its_score_column_says_what_to_pass_and_which_scores_it_has():
    """Nothing named, the provenance's column missing: not "column='resonance' is not a column", which reads as if
    the caller had passed it, but what to pass and the score columns there are."""
    ds = Dataset.from_dict({"prompt": ["a", "b"], "res": [1.0, 2.0], "resonance_alignment": [0.1, 0.2]})
    with pytest.raises(ValueError) as caught:
        select_by_resonance(ds, keep=0.5)
    assert str(caught.value) == (
        "select_by_resonance: the dataset has no score column 'resonance' (its provenance's, else the default); "
        "name one with column= (CLI: --column); score columns it has: ['resonance_alignment']"
    )
    assert select_by_resonance(ds, keep=0.5, column="res")["res"] == [1.0]
