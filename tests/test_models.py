import pytest

from buxiban.errors import ModelLoadError
from buxiban.models.load import load, resolve


def test_local_directory_loads_with_its_tokenizer(tiny_model_dir):
    model, tokenizer, source = load(str(tiny_model_dir))
    assert source.kind == "local" and source.fingerprint.startswith("sha256:")
    assert tokenizer.chat_template and model.config.num_hidden_layers == 2
    assert resolve(str(tiny_model_dir)).fingerprint == source.fingerprint


def test_missing_path_says_what_to_pass(tmp_path):
    with pytest.raises(ModelLoadError, match="local model directory"):
        resolve(str(tmp_path / "nope"))


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve(str(tmp_path))


def test_unreachable_hub_says_to_pass_a_local_directory():
    with pytest.raises(ModelLoadError, match="pass its local directory"):
        resolve("someorg/some-model-that-is-not-cached")
