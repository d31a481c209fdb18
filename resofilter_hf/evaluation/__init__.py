"""Answer checking for generated solutions: GSM8K final answers, their accuracy, and an offline `evaluate` metric.

`GSM8K_ACCURACY_PATH` is a folder that `evaluate.load` reads with no network access. Importing this package
does not import `evaluate`.
"""

from pathlib import Path

from .gsm8k_accuracy.final_answer import extract_final_answer, final_answer_accuracy


GSM8K_ACCURACY_PATH = str(Path(__file__).parent / "gsm8k_accuracy")

__all__ = ["GSM8K_ACCURACY_PATH", "extract_final_answer", "final_answer_accuracy"]
