"""GSM8K-style final-answer exact match as an `evaluate` metric.

Load it offline from the folder that holds this file: ``evaluate.load(resofilter_hf.evaluation.GSM8K_ACCURACY_PATH)``.
The answer rules are in the sibling file ``final_answer.py``, which `evaluate` copies along with this script.
"""

import datasets
import evaluate

from .final_answer import final_answer_accuracy


_DESCRIPTION = """\
Exact match of final answers in GSM8K-style solutions: the number after the last `####`, normalised so that
"$1,000." equals "1000", "3.0" equals "3" and "1/2" equals "0.5". A prediction without an answer counts as wrong.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (list of str): generated solutions.
    references (list of str): reference solutions ("... #### 72") or bare answers ("72").
    fallback_to_last_number (bool, default False): when a prediction has no number after `####`, use the last
        number in it (references always fall back, so a bare "72" works).
Returns:
    accuracy (float): share of predictions whose final answer equals the reference's.
    extracted (float): share of predictions in which a final answer was found.
Examples:
    >>> metric = evaluate.load(GSM8K_ACCURACY_PATH)
    >>> metric.compute(predictions=["2 + 2 = 4\\n#### 4", "I think 5"], references=["#### 4", "5"])
    {'accuracy': 0.5, 'extracted': 0.5}
"""

_CITATION = """\
@article{cobbe2021gsm8k,
  title={Training Verifiers to Solve Math Word Problems},
  author={Cobbe, Karl and Kosaraju, Vineet and Bavarian, Mohammad and Chen, Mark and Jun, Heewoo and Kaiser, Lukasz
    and Plappert, Matthias and Tworek, Jerry and Hilton, Jacob and Nakano, Reiichiro and Hesse, Christopher
    and Schulman, John},
  journal={arXiv preprint arXiv:2110.14168},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Gsm8kAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://github.com/openai/grade-school-math"],
        )

    def _compute(self, predictions, references, fallback_to_last_number=False):
        return final_answer_accuracy(predictions, references, fallback_to_last_number=fallback_to_last_number)
