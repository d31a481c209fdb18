"""Two processes (torchrun on one node or two, gloo on CPU) give the same column as one process, bit for bit,
every row exactly once."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.engine.shards import ShardStore
from resofilter_hf.toy import cached_tiny_model, make_math_problems


SCRIPTS = Path(__file__).parent / "scripts"


def torchrun_two_ranks(script: str, *args: str) -> None:
    """`torchrun --nproc_per_node 2` on CPU (gloo); the scripts assert and record the world size they got."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run([*cmd, str(SCRIPTS / script), *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def torchrun_two_nodes(script: str, *args: str) -> None:
    """`torchrun --nnodes 2 --nproc_per_node 1` twice, as two nodes would run it, rendezvous on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    nodes = [
        subprocess.Popen(
            [*cmd, "--node_rank", str(rank), str(SCRIPTS / script), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err[-4000:]


def single_process_column(model_dir, tmp_path):
    dataset = make_math_problems(11, seed=12, flaw_rate=0.5)  # the script's data
    args = ResonanceConfig(
        output_dir=str(tmp_path / "single"),
        report_to="none",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        resonance_batch_size=3,
        resonance_resume=False,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    single = ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir)
    ).score()
    return dataset, single


def check_two_processes_like_one(model_dir, out):
    world = json.loads((out / "world.json").read_text())
    assert world == {"world_size": 2, "env": 2}, "torchrun must have given two processes"
    (folder,) = [p for p in (out / "resonance").iterdir() if p.is_dir() and p.name != "inflight"]
    shares = {0: set(), 1: set()}  # the work was split: disjoint shares that cover every scored row
    for marker in folder.glob("w*-s*.done"):
        rows = ShardStore(folder).read([marker.stem]).column("id").to_pylist()
        shares[json.loads(marker.read_text())["process"]].update(rows)
    assert shares[0] and shares[1] and not shares[0] & shares[1]

    dataset, single = single_process_column(model_dir, out)
    for rank in (0, 1):  # every rank returns the full dataset, in input order, each row once
        gathered = Dataset.from_parquet(str(out / f"scored_rank{rank}.parquet"))
        assert len(gathered) == len(dataset) == 11
        assert list(gathered["prompt"]) == list(dataset["prompt"])
        assert list(gathered["resonance_status"]) == list(single["resonance_status"])
        bits = np.asarray(gathered["resonance"]).view(np.int64)
        assert np.array_equal(bits, np.asarray(single["resonance"]).view(np.int64)), "bit for bit"
        np.testing.assert_array_equal(gathered["resonance_tokens"], single["resonance_tokens"])
        streamed = json.loads((out / f"streamed_rank{rank}.json").read_text())
        np.testing.assert_array_equal(np.array(streamed, dtype=np.float64), np.asarray(single["resonance"]))
    assert shares[0] | shares[1] == {i for i, s in enumerate(single["resonance_status"]) if s == "ok"}


def test_two_ranks_score_like_one(tmp_path):
    model_dir = cached_tiny_model(arch="llama")
    torchrun_two_ranks("score_two_ranks.py", str(model_dir), str(tmp_path))
    check_two_processes_like_one(model_dir, tmp_path)


def test_two_nodes_score_like_one(tmp_path):
    model_dir = cached_tiny_model(arch="llama")
    torchrun_two_nodes("score_two_ranks.py", str(model_dir), str(tmp_path))
    check_two_processes_like_one(model_dir, tmp_path)


@pytest.mark.slow
def test_two_ranks_in_flight_score_each_row_once_per_epoch(tmp_path):
    model_dir = cached_tiny_model(arch="llama")
    torchrun_two_ranks("train_two_ranks.py", str(model_dir), str(tmp_path))
    assert json.loads((tmp_path / "world_rank0.json").read_text())["world_size"] == 2

    dataset = make_math_problems(11, seed=13, flaw_rate=0.5)
    args = ResonanceConfig(
        output_dir=str(tmp_path / "single"), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True,
        resonance_resume=False,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    reference = ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir)
    ).score()["resonance"]
    for rank in (0, 1):
        trained = Dataset.from_parquet(str(tmp_path / f"trained_rank{rank}.parquet"))
        for epoch in (0, 1):
            column = np.array(trained[f"resonance_epoch{epoch}"])
            assert np.isfinite(column).all(), "every row scored in every epoch"
            # in-flight gradients pass TRL's float32 fused head
            np.testing.assert_allclose(column, reference, rtol=1e-5)
    # the work was split: per epoch each rank trained half (the sampler repeats one row to even out 11 rows)
    shares = [json.loads((tmp_path / f"world_rank{r}.json").read_text())["trained"] for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 2 * 6
    first_epoch = [set(share[:6]) for share in shares]
    assert first_epoch[0] | first_epoch[1] == set(range(11)) and len(first_epoch[0] & first_epoch[1]) <= 1
