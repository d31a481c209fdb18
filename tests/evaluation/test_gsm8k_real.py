"""Real data: GSM8K rows (a vendored sample of the MIT-licensed files) through the loader and the scorer."""

import re
from pathlib import Path

import numpy as np
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, select_by_resonance
from resofilter_hf.evaluation import extract_final_answer
from resofilter_hf.evaluation.gsm8k import load_gsm8k
from resofilter_hf.toy import cached_tiny_model


SAMPLE = Path(__file__).parents[1] / "data" / "gsm8k"


def test_sample_loads_with_final_answers():
    for split, n in (("train", 120), ("test", 40)):
        ds = load_gsm8k(split, path=SAMPLE)
        assert len(ds) == n
        for answer, final in zip(ds["answer"], ds["final_answer"]):
            assert final == answer.rsplit("#### ", 1)[1].replace(",", "")
            assert re.fullmatch(r"-?\d+", final)
            assert extract_final_answer(answer) == final


def test_gsm8k_rows_score_and_select(tmp_path):
    rows = load_gsm8k("train", path=SAMPLE).select(range(24))
    model_dir = cached_tiny_model(arch="llama")
    args = ResonanceConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, disable_tqdm=True, resonance_batch_size=8,
        resonance_anatomy=True,
    )  # fmt: skip
    trainer = ResonanceTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=rows,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    scored = trainer.score()
    assert list(scored["resonance_status"]) == ["ok"] * 24
    scores = np.array(scored["resonance"])
    assert np.isfinite(scores).all() and len(set(scores)) == 24  # distinct: a ranking, not ties
    # the fresh-AdamW step moves every entry by about lr (|g|/(|g|+eps) is ~1), so scores sit near lr, spread tiny
    assert abs(scores.mean() - 1e-5) < 1e-8 and scores.std() / scores.mean() < 1e-3
    kept = select_by_resonance(scored, keep=0.5)
    assert len(kept) == 12
    assert max(kept["resonance"]) <= np.sort(scores)[11]
