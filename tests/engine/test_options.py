"""The one option checker: the same message, naming where, the option, the value and the choices, from the config
and from selection alike."""

import re

import pytest

from resofilter_hf import ResonanceConfig, select_by_resonance
from resofilter_hf.engine.options import check_option
from resofilter_hf.toy import make_math_problems


def test_accepts_a_choice_and_names_everything_otherwise():
    check_option("here", "mode", "b", ("a", "b"))
    with pytest.raises(ValueError) as err:
        check_option("here", "mode", "c", ("a", "b"))
    assert str(err.value) == "here: mode='c' is not one of 'a', 'b'"


def test_config_and_selection_use_the_same_format(tmp_path):
    with pytest.raises(ValueError) as config_err:
        ResonanceConfig(str(tmp_path), use_cpu=True, resonance_when="during")
    assert str(config_err.value) == (
        "ResonanceConfig: resonance_when='during' is not one of 'none', 'before_train', 'after_train', 'inflight'"
    )
    scored = make_math_problems(4).add_column("resonance", [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError) as selection_err:
        select_by_resonance(scored, keep=0.5, drop="top")
    assert str(selection_err.value) == "select_by_resonance: drop='top' is not one of 'highest', 'lowest'"
    pattern = r"^[\w.]+: \w+='\w+' is not one of ('\w+', )*'\w+'$"
    assert re.match(pattern, str(config_err.value)) and re.match(pattern, str(selection_err.value))
