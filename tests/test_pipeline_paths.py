"""One pipeline, two ways in: every guarantee of `score()` holds for a `Dataset` and for a stream alike (statuses,
truncation, alignment, provenance and confounds, refused overwrites, clear errors), and the parts folder of a
stream holds exactly one run. Each test runs the same assertions on both paths."""

import json
import math
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, IterableDataset, load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.engine.files import write_atomic
from resofilter_hf.pipeline import source as pipeline_source
from resofilter_hf.provenance import write_parquet
from resofilter_hf.toy import cached_tiny_model, make_math_problems


MODEL_DIR = cached_tiny_model(arch="llama")
QUIET = {"report_to": "none", "use_cpu": True, "bf16": False, "disable_tqdm": True}
PATHS = ("dataset", "stream")


def make(tmp_path, dataset=None, **options) -> ResonanceTrainer:
    return ResonanceTrainer(
        AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float64),
        ResonanceConfig(str(tmp_path / "out"), **QUIET, **options),
        train_dataset=dataset if dataset is not None else make_math_problems(2),
        processing_class=AutoTokenizer.from_pretrained(MODEL_DIR),
    )


def as_stream(dataset: Dataset, folder) -> IterableDataset:
    """`dataset` as users stream it: a parquet file read with `streaming=True`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "input.parquet"
    dataset.to_parquet(str(path))
    return load_dataset("parquet", data_files=str(path), split="train", streaming=True)


def scored_by(path: str, trainer, dataset: Dataset, tmp_path, **kwargs) -> tuple[Dataset, dict]:
    """(the scored rows as a Dataset, their provenance) through `path`; the stream's parts are read back from disk."""
    if path == "dataset":
        scored = trainer.score(dataset, **kwargs)
        return scored, read_provenance(scored)
    parts = tmp_path / "parts"
    stream = trainer.score(as_stream(dataset, tmp_path / "in"), parts_dir=str(parts), **kwargs)
    assert isinstance(stream, IterableDataset)
    back = load_dataset(str(parts), split="train")
    assert repr(back.to_list()) == repr(list(stream)), "the returned stream is what the folder holds"
    return back, read_provenance(stream)


def poison_hook(token: int):
    def hook(module, args, output):
        return output.masked_fill((args[0] == token)[..., None], math.nan)

    return hook


@pytest.mark.parametrize("path", PATHS)
def test_a_nan_loss_row_is_nonfinite_on_both_paths(tmp_path, path):
    dataset = make_math_problems(6, seed=3)
    trainer = make(tmp_path, dataset, resonance_resume=False)
    rows = [set(ids) for ids in trainer.prepare_scoring_dataset(dataset)["input_ids"]]
    token = min(t for t in set.union(*rows) if sum(t in r for r in rows) == 2)
    poisoned = [i for i, r in enumerate(rows) if token in r]
    handle = trainer.model.get_input_embeddings().register_forward_hook(poison_hook(token))
    try:
        with pytest.warns(UserWarning, match=rf"{len(poisoned)} of 6 rows have no resonance score .*'nonfinite'"):
            scored, provenance = scored_by(path, trainer, dataset, tmp_path)
    finally:
        handle.remove()
    status = np.array(scored["resonance_status"])
    assert (status[poisoned] == "nonfinite").all() and (np.delete(status, poisoned) == "ok").all()
    assert np.isnan(np.array(scored["resonance"])[poisoned]).all()
    assert provenance["scoring"]["n_scored"] == 6 - len(poisoned) and provenance["scoring"]["n_rows"] == 6


@pytest.mark.parametrize("path", PATHS)
def test_rows_cut_by_max_length_are_flagged_and_noticed_on_both_paths(tmp_path, path):
    dataset = make_math_problems(6, seed=5, flaw_rate=0.5)
    lengths = [len(ids) for ids in make(tmp_path, dataset).prepare_scoring_dataset(dataset)["input_ids"]]
    max_length = sorted(lengths)[2]
    trainer = make(tmp_path, dataset, max_length=max_length, resonance_resume=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scored, provenance = scored_by(path, trainer, dataset, tmp_path)
    assert scored["resonance_truncated"] == [n > max_length for n in lengths]
    assert sum(f"longer than max_length={max_length}" in str(w.message) for w in caught) == 1
    assert provenance["scoring"]["n_truncated"] == sum(n > max_length for n in lengths) == 3  # cards show it


@pytest.mark.parametrize("path", PATHS)
def test_rows_cut_before_their_answer_count_as_truncated_on_both_paths(tmp_path, path):
    """A row cut before its first loss token has no score (status `truncated`) and is still a cut row."""
    dataset = make_math_problems(6, seed=5, flaw_rate=0.5)
    trainer = make(tmp_path, dataset, max_length=4, resonance_resume=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scored, provenance = scored_by(path, trainer, dataset, tmp_path)
    assert scored["resonance_status"] == ["truncated"] * 6 and scored["resonance_truncated"] == [True] * 6
    assert provenance["scoring"]["n_truncated"] == 6 and provenance["scoring"]["n_scored"] == 0


@pytest.mark.parametrize("path", PATHS)
def test_rescoring_a_selected_file_keeps_none_of_its_earlier_provenance_on_both_paths(tmp_path, path):
    """A file selected by `drop="lowest"`, then scored afresh: the new scores carry this run's provenance alone (a
    selection rule read from the old one would drop the wrong end), and earlier library columns are named."""
    from resofilter_hf import select_by_resonance
    from resofilter_hf.provenance import with_provenance

    rows = make_math_problems(6, seed=5, flaw_rate=0.5)
    rows = rows.add_column("baseline_loss", [0.5] * 6).add_column("resonance_sgd", [1.0] * 6)
    old = {"column": "resonance", "drop": "lowest", "n_input": 800}
    rows = with_provenance(rows, selection=old, baselines={"n_rows": 800}, scoring={"column": "resonance"})
    scored, provenance = scored_by(path, make(tmp_path, rows, resonance_resume=False), rows, tmp_path)
    assert list(provenance) == ["scoring"]
    assert provenance["scoring"]["carried_over"] == ["baseline_loss", "resonance_sgd"]
    if path == "dataset":
        assert read_provenance(select_by_resonance(scored, keep=0.5))["selection"]["drop"] == "highest"


@pytest.mark.parametrize("path", PATHS)
def test_a_reference_set_gives_alignment_on_both_paths(tmp_path, path):
    dataset, reference = make_math_problems(5, seed=1), make_math_problems(4, seed=2)
    trainer = make(tmp_path, dataset, resonance_resume=False)
    expected = trainer.score(dataset, reference=reference)
    scored, provenance = scored_by(path, trainer, dataset, tmp_path, reference=reference)
    np.testing.assert_array_equal(scored["resonance_alignment"], expected["resonance_alignment"])
    assert np.isfinite(scored["resonance_alignment"]).all()
    assert provenance["scoring"]["reference"]["n_used"] == 4


@pytest.mark.parametrize("path", PATHS)
def test_provenance_and_confounds_on_both_paths(tmp_path, path):
    dataset = make_math_problems(8, seed=4)
    trainer = make(tmp_path, dataset, resonance_resume=False, resonance_anatomy=True)
    scored, provenance = scored_by(path, trainer, dataset, tmp_path)
    scoring = provenance["scoring"]
    assert scoring["column"] == "resonance" and scoring["n_rows"] == 8 and scoring["n_scored"] == 8
    assert set(scoring["confounds"]) == {"resonance", "resonance_toward_zero", "resonance_below_eps",
                                         "resonance_grad_norm"}  # fmt: skip
    assert scoring["confounds"]["resonance"]["n"] == 8 and scoring["loss_on_prompt"] is False
    assert {"resonance_toward_zero", "resonance_truncated"} <= set(scored.column_names)


@pytest.mark.parametrize("path", PATHS)
def test_a_user_column_named_like_the_row_id_is_refused_on_both_paths(tmp_path, path):
    dataset = make_math_problems(3, seed=1)
    trainer = make(tmp_path, dataset)
    mine = dataset.add_column("__resonance_row_id__", ["a", "b", "c"])
    with pytest.raises(ValueError, match="a column named '__resonance_row_id__'"):
        scored_by(path, trainer, mine, tmp_path)
    with pytest.raises(ValueError, match="a column named '__resonance_row_id__'"):
        make(tmp_path, mine)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("max_rows", [0, -3, 2.5, True])
def test_a_bad_max_rows_is_named_on_both_paths(tmp_path, path, max_rows):
    trainer = make(tmp_path)
    with pytest.raises(ValueError, match=r"`max_rows` must be a whole number >= 1 or None"):
        scored_by(path, trainer, make_math_problems(3), tmp_path, max_rows=max_rows)


def test_an_empty_stream_says_it_has_no_rows(tmp_path):
    trainer = make(tmp_path)
    empty = Dataset.from_dict({"prompt": ["x"], "completion": ["y"]}).select([])
    with pytest.raises(ValueError, match=r"the stream has no rows"):
        trainer.score(as_stream(empty, tmp_path / "in"), parts_dir=str(tmp_path / "parts"))
    with pytest.raises(ValueError, match=r"the stream has no rows"):
        trainer.score(as_stream(make_math_problems(3), tmp_path / "in3").filter(lambda r: False))
    assert not (tmp_path / "parts").exists()


# ---- the parts folder ----------------------------------------------------------------------------------------


def test_streaming_into_the_folder_of_its_own_input_is_refused_also_through_a_symlink(tmp_path):
    trainer = make(tmp_path)
    data = tmp_path / "data"
    stream = as_stream(make_math_problems(4), data)
    (tmp_path / "link").symlink_to(data)
    before = sorted(p.name for p in data.iterdir())
    for target in (data, tmp_path / "link", data / "input.parquet"):
        with pytest.raises(ValueError, match=r"would overwrite the input .*input\.parquet"):
            trainer.score(stream, parts_dir=str(target))
    assert sorted(p.name for p in data.iterdir()) == before
    assert load_dataset("parquet", data_files=str(data / "input.parquet"), split="train").num_rows == 4


def test_a_second_shorter_run_replaces_the_first_runs_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_source, "WINDOW_ROWS", 4)
    trainer = make(tmp_path, resonance_resume=False)
    parts = tmp_path / "parts"
    trainer.score(as_stream(make_math_problems(10, seed=1), tmp_path / "a"), parts_dir=str(parts))
    assert load_dataset(str(parts), split="train").num_rows == 10 and len(list(parts.glob("*.parquet"))) == 3
    short = make_math_problems(3, seed=2)
    trainer.score(as_stream(short, tmp_path / "b"), parts_dir=str(parts))
    back = load_dataset(str(parts), split="train")
    assert back["prompt"] == short["prompt"] and len(list(parts.glob("*.parquet"))) == 1
    assert load_dataset("parquet", data_dir=str(parts), split="train").num_rows == 3


def test_a_folder_holding_other_files_is_not_replaced(tmp_path):
    trainer = make(tmp_path)
    parts = tmp_path / "mine"
    parts.mkdir()
    (parts / "notes.md").write_text("my notes")
    with pytest.raises(ValueError, match=r"holds files resofilter-hf did not write there \(notes\.md\)"):
        trainer.score(as_stream(make_math_problems(3), tmp_path / "in"), parts_dir=str(parts))
    assert [p.name for p in parts.iterdir()] == ["notes.md"]


def test_a_failed_run_leaves_the_previous_parts_as_they_were(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_source, "WINDOW_ROWS", 3)
    trainer = make(tmp_path, resonance_resume=False)
    parts = tmp_path / "parts"
    first = make_math_problems(4, seed=1)
    trainer.score(as_stream(first, tmp_path / "a"), parts_dir=str(parts))
    before = sorted(p.name for p in parts.iterdir())
    rows = make_math_problems(7, seed=2).to_list()
    rows[5]["completion"] = None  # the second window fails its row check, after the first window was written
    bad = Dataset.from_list(rows)
    with pytest.raises(ValueError, match=r"row 5: "):
        trainer.score(as_stream(bad, tmp_path / "b"), parts_dir=str(parts))
    assert sorted(p.name for p in parts.iterdir()) == before
    assert load_dataset(str(parts), split="train")["prompt"] == first["prompt"]


def test_a_column_null_in_the_first_window_and_typed_later_is_refused_before_compute(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_source, "WINDOW_ROWS", 4)
    rows = make_math_problems(8, seed=1).to_list()
    for i, row in enumerate(rows):
        row["note"] = None if i < 4 else f"note {i}"
    trainer = make(tmp_path)
    stream = IterableDataset.from_generator(lambda: iter(rows))  # no schema up front
    with pytest.raises(ValueError, match=r"column 'note' is null in all of the stream's first 4 rows"):
        trainer.score(stream, parts_dir=str(tmp_path / "parts"))
    assert not (tmp_path / "out" / "resonance").exists(), "refused before any compute"

    folder = tmp_path / "in"  # a JSON Lines stream has its types from the file: one schema, every part readable
    folder.mkdir()
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    typed = load_dataset("json", data_files=str(folder / "rows.jsonl"), split="train", streaming=True)
    trainer.score(typed, parts_dir=str(tmp_path / "parts"))
    assert load_dataset(str(tmp_path / "parts"), split="train")["note"] == [r["note"] for r in rows]


def test_a_stream_whose_types_change_names_the_column_and_keeps_no_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_source, "WINDOW_ROWS", 4)
    rows = make_math_problems(8, seed=1).to_list()
    for i, row in enumerate(rows):
        row["id"] = i if i < 4 else f"x{i}"
    trainer = make(tmp_path, resonance_resume=False)
    stream = IterableDataset.from_generator(lambda: iter(rows))  # untyped: every row as it comes
    with pytest.raises(ValueError, match=r"rows 4\.\.7 of the stream do not fit the types .*column 'id'"):
        trainer.score(stream, parts_dir=str(tmp_path / "parts"))
    assert not list((tmp_path / "parts").glob("*.parquet"))


# ---- one key per output --------------------------------------------------------------------------------------


def test_another_score_column_into_the_same_output_dir_is_written_as_asked(tmp_path):
    dataset = make_math_problems(4, seed=1)
    first = make(tmp_path, dataset).score()
    again = make(tmp_path, dataset, resonance_column="paper_score").score()
    assert "paper_score" in again.column_names and "resonance" not in again.column_names
    assert read_provenance(again)["scoring"]["column"] == "paper_score"
    np.testing.assert_array_equal(again["paper_score"], first["resonance"])


# every resonance_* field, changed to a value that changes what score() writes, or named as not applying to it
CHANGED = {
    "resonance_target": "weights",  # the default "auto" resolves to weights on a plain model: same result
    "resonance_modules": ["self_attn.o_proj"],
    "resonance_last_n_layers": 1,
    "resonance_lora_delta": "effective",  # LoRA only: same scores on a plain model
    "resonance_optimizer": "sgd",
    "resonance_lr": 2e-5,
    "resonance_weight_decay": 0.1,
    "resonance_eps": 1e-6,
    "resonance_betas": [0.5, 0.9],  # unused by a fresh AdamW step: same scores
    "resonance_state_samples": 2,  # adamw_state only
    "resonance_metric": "l2",
    "resonance_anatomy": True,
    "resonance_reference": "REFERENCE",
    "resonance_column": "paper_score",
    "resonance_batch_size": 1,
    "resonance_batch_tokens": 4096,
    "resonance_chunk_mb": 1,
    "resonance_resume": False,
}
NOT_FOR_SCORE = {"resonance_when", "resonance_inflight_state"}  # how train() scores, not what score() writes


def test_the_changed_fields_cover_every_resonance_field():
    fields = {f for f in ResonanceConfig.__dataclass_fields__ if f.startswith("resonance_")}
    assert fields == set(CHANGED) | NOT_FOR_SCORE


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_changing_any_resonance_field_never_brings_back_a_stale_result(tmp_path, field):
    dataset = make_math_problems(4, seed=1)
    value = CHANGED[field]
    if value == "REFERENCE":
        reference = tmp_path / "reference.parquet"
        make_math_problems(3, seed=9).to_parquet(str(reference))
        value = str(reference)
    make(tmp_path, dataset).score()  # the defaults' result sits in output_dir
    changed = make(tmp_path, dataset, **{field: value}).score()
    fresh = make(tmp_path / "fresh", dataset, **{field: value}).score()
    assert changed.column_names == fresh.column_names
    for name in fresh.column_names:
        assert changed[name] == fresh[name] or np.array_equal(changed[name], fresh[name], equal_nan=True), name
    assert read_provenance(changed)["scoring"] == read_provenance(fresh)["scoring"]


def test_partial_files_of_a_live_writer_are_left_alone_and_a_dead_ones_removed(tmp_path):
    from resofilter_hf.engine.files import remove_stale_partials, temporary_path

    target = tmp_path / "shard.parquet"
    mine = temporary_path(target)
    mine.write_text("in flight")
    dead_pid = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100000
    dead = tmp_path / mine.name.replace(f"-{os.getpid()}-", f"-{dead_pid}-")
    dead.write_text("left by a killed writer")
    foreign = tmp_path / ".notes.txt.partial"
    foreign.write_text("not ours")
    assert remove_stale_partials(tmp_path) == [dead]
    assert mine.exists() and foreign.exists() and not dead.exists()


# ---- writers that share a folder -----------------------------------------------------------------------------


def test_a_second_process_on_the_same_output_dir_is_refused_and_the_first_finishes(tmp_path):
    script = Path(__file__).parent / "scripts" / "score_rows.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start():  # 40 rows, a forward pass every 0.5 s: the first run lasts while the second starts
        command = [sys.executable, str(script), str(MODEL_DIR), str(tmp_path / "out"), "40", "0.5"]
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    first = start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "out" / "resonance").glob("*/w*-s*.done")):
        time.sleep(0.05)
    assert first.poll() is None, first.stderr.read()[-2000:]
    second = start()
    _, err = second.communicate(timeout=300)
    assert second.returncode != 0
    (folder,) = (tmp_path / "out" / "resonance").iterdir()
    assert f"{folder} is in use: process {first.pid} on " in err and "has been scoring there since" in err
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert len(list(folder.glob("w*-s*.done"))) == 20 and not (folder / ".lock").exists()


def test_threads_writing_one_path_never_collide(tmp_path):
    target = tmp_path / "scores.parquet"
    tables = [Dataset.from_dict({"x": [float(i)] * 500, "who": [i] * 500}) for i in range(8)]
    errors = []

    def write(i):
        try:
            for _ in range(5):
                write_parquet(tables[i], target, {"writer": i})
                write_atomic(tmp_path / "note.txt", f"writer {i}\n" * 1000)
        except Exception as err:  # noqa: BLE001  (any failure is the finding)
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    back = load_dataset("parquet", data_files=str(target), split="train")
    assert len(set(back["who"])) == 1 and back.num_rows == 500
    assert len(set((tmp_path / "note.txt").read_text().splitlines())) == 1
    assert not list(tmp_path.glob(".*.partial"))


def test_a_parts_folder_loads_back_with_its_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_source, "WINDOW_ROWS", 3)
    from resofilter_hf.provenance import load_scored, scored_provenance

    trainer = make(tmp_path, resonance_resume=False)
    rows = make_math_problems(7, seed=3)
    trainer.score(as_stream(rows, tmp_path / "in"), parts_dir=str(tmp_path / "parts"))
    back = load_scored(tmp_path / "parts")
    assert back["prompt"] == rows["prompt"] and read_provenance(back)["scoring"]["n_rows"] == 7
    assert scored_provenance(tmp_path / "parts") == {"scoring": read_provenance(back)["scoring"]}


def test_a_users_part_files_are_not_taken_for_ours(tmp_path):
    trainer = make(tmp_path)
    parts = tmp_path / "parts"
    parts.mkdir()
    make_math_problems(2).to_parquet(str(parts / "part-00000-of-00001.parquet"))  # Spark's / pandas' naming
    with pytest.raises(ValueError, match=r"holds files resofilter-hf did not write there \(part-00000-of-00001"):
        trainer.score(as_stream(make_math_problems(3), tmp_path / "in"), parts_dir=str(parts))
    assert [p.name for p in parts.iterdir()] == ["part-00000-of-00001.parquet"]


def test_the_confound_sample_is_every_row_up_to_its_size_then_uniform():
    import pyarrow as pa

    from resofilter_hf.confounds import spearman
    from resofilter_hf.pipeline.results import Tally

    rng = np.random.default_rng(1)
    x = rng.normal(size=50_000)
    y = -0.7 * x + 0.7 * rng.normal(size=50_000)

    def tally(cap: int) -> Tally:
        out = Tally("resonance", sample_rows=cap)
        for start in range(0, 50_000, 4096):
            part = slice(start, min(50_000, start + 4096))
            m = part.stop - part.start
            out.add(pa.table({"resonance": x[part], "resonance_tokens": y[part], "resonance_loss": y[part],
                              "resonance_status": ["ok"] * m, "resonance_truncated": [False] * m}), start)  # fmt: skip
        return out

    whole, sampled = tally(50_000), tally(10_000)
    assert np.array_equal(whole.column_values()["resonance"], x) and whole.n == sampled.n == 50_000
    values = sampled.column_values()
    assert sampled.kept == 10_000 and len(sampled.sample["resonance"]) == 10_000
    assert set(values["resonance"]) <= set(x) and abs(np.mean(np.isin(x, values["resonance"])) - 0.2) < 1e-9
    assert abs(spearman(values["resonance"], values["resonance_tokens"]) - spearman(x, y)) < 0.02
    again = tally(10_000).column_values()["resonance"]
    assert np.array_equal(again, values["resonance"]), "the same rows give the same sample"
