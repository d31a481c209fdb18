"""`resofilter demo`: the whole story on the embedded toy world, start to finish, with nothing from the Hub.

It generates short math word problems with labelled flaws (the basic world: two one-digit steps, which a tiny
model learns in seconds), builds and warms up a tiny model, scores a 30%-flawed pool by resonance (the paper's
score and variants), by alignment with a trusted clean set and by the baselines (loss, perplexity, IFD, length,
random), checks each score against the flaw labels (AUROC), retrains on the kept half by the paper's score,
alignment, loss and random, on the full pool and on the same questions with no flaws, evaluates the retrained
models on clean held-out problems, and says in words what moved on this one seed. The steps are
`resofilter_hf.demo.story`; the source repository's quality benchmark runs the same steps over seeds.
"""

import json
import logging
import os
import platform
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..engine.files import write_atomic
from ..provenance import library_versions, read_provenance


def run_demo(
    output_dir: str | Path = "resofilter-demo", *, quick: bool = False, seed: int = 0, threads: int = 1
) -> dict[str, Any]:
    """Run the story into `output_dir`, print its table, and return the summary (also in ``summary.json``).

    `threads` is torch's thread count: the demo's models are tiny, so one thread is fastest, and more threads
    slow them down badly when other processes share the cores.
    """
    from ..confounds import ConfoundWarning
    from ..hub.notices import headline_lines
    from ..hub.report import report
    from ..pipeline.results import TruncationWarning
    from ..provenance import load_scored
    from .story import run_story

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(output_dir)
    started = time.perf_counter()
    print(
        f"resofilter demo ({'quick' if quick else 'default'} size, seed {seed}, {threads} torch thread{'' if threads == 1 else 's'}) -> {out}"
    )
    with _quiet_imports(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfoundWarning)  # each scoring pass would say it: said once, below
        warnings.simplefilter("ignore", TruncationWarning)  # a setting the demo fixes: said below, by flaw
        result = run_story(out, seed=seed, quick=quick, threads=threads, progress=True)
    summary = {
        "output_dir": str(out.resolve()),
        "quick": quick,
        "seed": seed,
        "torch_threads": threads,
        "n": result["n"],
        "flaw_counts": result["flaw_counts"],
        "auroc": result["auroc"],
        "confounds": result["confounds"],
        "selections": result["selections"],
        "what_moved": result["what_moved"],
        "plots": result["plots"],
        "scored": str(out / "scored.parquet"),
        "timings_s": {**result["timings_s"], "total": round(time.perf_counter() - started, 2)},
        "platform": platform.platform(),
        "versions": library_versions(),
    }
    summary["report"] = str(report(out / "scored.parquet", out / "report.html", label_column="flaw"))
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    print()
    print(result["table"])
    print()
    print("What moved:")
    for line in result["what_moved"]:
        print(f"- {line}")
    if quick:
        print("- --quick: sizes so small that models learn nothing; it checks that every step runs, and its")
        print("  accuracies and AUROCs mean nothing. Run without --quick (a few minutes) for the real story.")
    print()
    scored = load_scored(out / "scored.parquet")
    cut = _truncation_line(scored)
    print(*([cut, ""] if cut else []), sep="\n")
    headline = headline_lines(read_provenance(scored), "resonance")
    print(*headline, *([""] if headline else []), sep="\n")
    print("Next: keep half by resonance, or stage a dataset repo with its card:")
    print(f"  resofilter select {out / 'scored.parquet'} {out / 'keep50.parquet'} --keep 0.5")
    print(f"  resofilter publish {out / 'scored.parquet'} --keep 0.5 --local-dir {out / 'dataset-repo'}")
    print(f"done in {summary['timings_s']['total']:.0f} s; everything is in {out.resolve()} (summary.json)")
    print(f"open the report: {Path(summary['report']).resolve()}")
    return summary


def _truncation_line(scored) -> str | None:
    """The pool's rows cut at the demo's max_length, by flaw kind (None when none was cut): the demo fixes the
    length, so the scoring pass's warning, which asks the user to act, becomes a fact about the result."""
    cut = [bool(c) for c in scored["resonance_truncated"]]
    if not any(cut):
        return None
    kinds = Counter(flaw for flaw, was_cut in zip(scored["flaw"], cut) if was_cut)
    max_length = read_provenance(scored)["scoring"]["max_length"]
    return (
        f"Cut: {sum(cut)} of {len(cut)} pool rows ({', '.join(f'{k} {n}' for k, n in kinds.most_common())}) are "
        f"longer than the demo's max_length of {max_length} tokens and were scored on their first {max_length} "
        "(column `resonance_truncated`)."
    )


@contextmanager
def _quiet_imports() -> Iterator[None]:
    """Hold back what optional backends log when peft imports them (bitsandbytes warns that its CPU kernels
    package is missing, which the demo never uses); errors still show. The level is restored afterwards."""
    logger = logging.getLogger("bitsandbytes")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
