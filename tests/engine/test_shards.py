"""The shard store, token-budget batch plans and out-of-memory retries (no model needed for most)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resofilter_hf.engine.scorer import ResonanceScorer, RowTooLongError, plan_batches
from resofilter_hf.engine.shards import ShardError, ShardStore


def columns(ids):
    n = len(ids)
    return {
        "id": np.asarray(ids, dtype=np.int64),
        "score": np.arange(n) * 1.5,
        "loss": np.ones(n),
        "tokens": np.full(n, 3),
        "status": ["ok"] * n,
    }


@pytest.fixture
def store(tmp_path):
    store = ShardStore(tmp_path / "scores")
    store.write("w000000-s00000", columns([4, 2, 7]), "tok", 0)
    return store


def test_a_written_shard_is_done_and_reads_back(store):
    assert store.is_done("w000000-s00000", "tok", np.array([4, 2, 7]))
    table = store.read(["w000000-s00000"])
    assert table.column("id").to_pylist() == [4, 2, 7] and table.column("score").to_pylist() == [0.0, 1.5, 3.0]
    assert not list(store.folder.glob(".*.partial")), "no temporary file is left behind"


def test_a_shard_without_its_marker_or_from_other_tokens_is_redone(store):
    assert not store.is_done("w000000-s00000", "other tokens", np.array([4, 2, 7]))
    store.marker("w000000-s00000").unlink()  # killed between the shard's rename and the marker's
    assert not store.is_done("w000000-s00000", "tok", np.array([4, 2, 7]))
    assert not store.is_done("w000000-s00001", "tok", np.array([1]))  # never started


def _rewrite(store, table):
    pq.write_table(table, store.path("w000000-s00000"))
    marker = json.loads(store.marker("w000000-s00000").read_text())
    marker["bytes"] = store.path("w000000-s00000").stat().st_size  # a consistent marker: only the content is bad
    store.marker("w000000-s00000").write_text(json.dumps(marker))


@pytest.mark.parametrize(
    "damage, message",
    [
        ("wrong_shape", r"columns \['id', 'result'\], expected \['id', 'score'"),
        ("negative_id", r"holds other row ids than its shard of work \(e\.g\. \[-1, 4\]\)"),
        ("garbage", r"not a readable scoring shard"),
        ("resized", r"missing or changed after it was completed"),
        ("marker_garbage", r"not a shard marker"),
        ("marker_shape", r"not a shard marker \(expected rows, bytes, tokens\)"),
    ],
)
def test_damaged_finished_shards_fail_naming_the_file(store, damage, message):
    path = store.path("w000000-s00000")
    named = path
    if damage == "wrong_shape":
        _rewrite(store, pa.table({"id": [4, 2, 7], "result": ["{}", "{}", "{}"]}))
    elif damage == "negative_id":
        _rewrite(store, pa.Table.from_pydict(columns([-1, 2, 7]), schema=store.schema))
    elif damage == "garbage":
        size = path.stat().st_size
        path.write_bytes(bytes(range(256)) * (size // 256) + b"\xff" * (size % 256))
    elif damage == "resized":
        path.write_bytes(path.read_bytes()[:-10])
    elif damage == "marker_garbage":
        store.marker("w000000-s00000").write_bytes(b"\x89PNG\xff\xfe")
        named = store.marker("w000000-s00000")
    else:
        store.marker("w000000-s00000").write_text(json.dumps([1, 2]))
        named = store.marker("w000000-s00000")
    with pytest.raises(ShardError, match=message) as caught:
        store.is_done("w000000-s00000", "tok", np.array([4, 2, 7]))
    assert str(named) in str(caught.value)


def test_token_budget_plans_longest_first_within_rows_and_tokens():
    lengths = np.array([5, 30, 12, 12, 7, 30, 3, 9])
    ids = np.arange(100, 108)
    batches = plan_batches(lengths, ids, batch_size=4, batch_tokens=40)
    assert sorted(np.concatenate(batches).tolist()) == list(range(8)), "every row exactly once"
    for batch in batches:
        assert len(batch) <= 4 and len(batch) * lengths[batch].max() <= 40
    assert [lengths[b].tolist() for b in batches] == [[30], [30], [12, 12, 9], [7, 5, 3]]
    assert [b.tolist() for b in plan_batches(lengths, ids, batch_size=3)] == [[1, 5, 2], [3, 7, 4], [0, 6]]


def test_a_row_over_the_budget_fails_naming_it_its_length_and_the_budget():
    with pytest.raises(RowTooLongError, match=r"row 105 has 30 tokens, more than `resonance_batch_tokens`=20"):
        plan_batches(np.array([5, 10, 12, 12, 7, 30]), np.arange(100, 106), batch_size=4, batch_tokens=20)
    with pytest.raises(RowTooLongError, match=r"at least 32"):  # padded to a multiple of 8
        plan_batches(np.array([30]), np.array([0]), batch_size=4, batch_tokens=31, pad_multiple=8)


class FakeOOM(RuntimeError):
    pass


class FlakyScorer(ResonanceScorer):
    """`score_batch` runs out of memory above `fits` rows, or on a row longer than `max_len` tokens."""

    oom_errors = (FakeOOM,)

    def __init__(self, fits: int, max_len: int = 10**9):
        self.fits, self.max_len, self.batch_tokens, self.calls = fits, max_len, None, []

    def score_batch(self, rows, capture):
        self.calls.append(len(rows))
        if len(rows) > self.fits or max(len(r["input_ids"]) for r in rows) > self.max_len:
            raise FakeOOM("CUDA out of memory (injected)")
        return [{"tokens": len(r["input_ids"]), "score": float(len(r["input_ids"]))} for r in rows]


class NoCapture:
    def clear(self):
        pass


def test_out_of_memory_splits_the_batch_and_retries():
    scorer = FlakyScorer(fits=2)
    rows = [{"input_ids": [1] * n} for n in (6, 5, 4, 3, 2)]
    results = scorer.score_rows(rows, [10, 11, 12, 13, 14], NoCapture())
    assert [r["score"] for r in results] == [6.0, 5.0, 4.0, 3.0, 2.0]  # in order, each row once
    assert scorer.calls == [5, 2, 3, 1, 2]


def test_a_single_row_out_of_memory_fails_naming_it():
    scorer = FlakyScorer(fits=8, max_len=5)
    rows = [{"input_ids": [1] * n} for n in (4, 9, 3)]
    with pytest.raises(RowTooLongError, match=r"row 21 \(9 tokens\) runs out of memory alone .*injected"):
        scorer.score_rows(rows, [20, 21, 22], NoCapture())
