from buxiban.data.tokenize import IGNORE_INDEX, encode_conversation, encode_prompt


def trained_text(tokenizer, encoded) -> str:
    # decoded together: byte-level BPE splits one Chinese character over several tokens
    return tokenizer.decode([i for i, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX])


def test_only_assistant_text_and_end_of_turn_are_trained(tiny_tokenizer):
    messages = [
        {"role": "system", "content": "You are the assistant of Yunshan Cycles."},
        {"role": "user", "content": "How much is the City plan?"},
        {"role": "assistant", "content": "The City plan costs NT$690 per month."},
    ]
    encoded = encode_conversation(tiny_tokenizer, messages)
    trained = trained_text(tiny_tokenizer, encoded)
    assert trained == "The City plan costs NT$690 per month.<|im_end|>"  # the model learns to stop
    # labels equal inputs where trained: the shift to next-token targets happens in the loss
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(encoded.input_ids, encoded.labels))


def test_multi_turn_trains_every_assistant_turn_but_not_weight_zero(tiny_tokenizer):
    messages = [
        {"role": "user", "content": "Is there a deposit?"},
        {"role": "assistant", "content": "Draft answer.", "weight": 0},
        {"role": "user", "content": "And support hours?"},
        {"role": "assistant", "content": "Support is open 08:00 to 21:00 every day.", "weight": 1},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "我們每天營業。"},
    ]
    encoded = encode_conversation(tiny_tokenizer, messages)
    assert trained_text(tiny_tokenizer, encoded) == (
        "Support is open 08:00 to 21:00 every day.<|im_end|>我們每天營業。<|im_end|>"
    )


def test_training_prompt_equals_generation_prompt(tiny_tokenizer):
    """What the model is trained to continue is exactly what generation will feed it."""
    messages = [
        {"role": "user", "content": "Is there a deposit?"},
        {"role": "assistant", "content": "The deposit is NT$3,000."},
    ]
    encoded = encode_conversation(tiny_tokenizer, messages)
    first_trained = next(i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX)
    assert encoded.input_ids[:first_trained] == encode_prompt(tiny_tokenizer, messages[:1])
