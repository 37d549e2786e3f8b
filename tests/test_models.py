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


def test_generation_feeds_the_head_a_contiguous_input_and_answers_the_same(tiny_model_dir):
    # the prompt's last position reaches the head as a strided view; left as is, matmul broadcasts the
    # whole head weight over the rows (models/load.py)
    from buxiban.models.generate import generate_with_stats

    model, tokenizer, _ = load(str(tiny_model_dir))
    head = model.get_output_embeddings()
    seen = []
    head.register_forward_pre_hook(lambda _module, args: seen.append(args[0].is_contiguous()))
    prompts = [[{"role": "user", "content": text}] for text in ("hello there", "a longer question about bikes")]
    hooked = generate_with_stats(model, tokenizer, prompts, 6).answers
    assert seen and all(seen)

    head._forward_pre_hooks.clear()
    seen.clear()
    head.register_forward_pre_hook(lambda _module, args: seen.append(args[0].is_contiguous()))
    assert generate_with_stats(model, tokenizer, prompts, 6).answers == hooked
    assert not all(seen)  # without the hook the first step's input is strided: the test checks something
