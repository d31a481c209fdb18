"""`model_init_kwargs={"gguf_file": ...}`: options a GGUF file cannot take are refused by name, before any file is
read (the file named here does not exist)."""

import pytest
from datasets import Dataset

from resofilter_hf import ResonanceConfig, ResonanceTrainer


ROWS = Dataset.from_list([{"prompt": "1 + 1 =", "completion": " 2"}])


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"quantization_config": {"load_in_4bit": True}}, r"`gguf_file` with `quantization_config`"),
        ({"dtype": "float8"}, r"model_init_kwargs: dtype 'float8'; use 'auto', 'bfloat16', 'float16' or 'float32'"),
    ],
)
def test_gguf_options_a_file_cannot_take_are_refused_by_name(tmp_path, extra, message):
    kwargs = {"gguf_file": "missing.gguf", **extra}
    args = ResonanceConfig(str(tmp_path), report_to="none", use_cpu=True, model_init_kwargs=kwargs)
    with pytest.raises(ValueError, match=message):
        ResonanceTrainer(model=str(tmp_path), args=args, train_dataset=ROWS)
