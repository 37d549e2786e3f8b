import pytest
import torch

from buxiban.config import load_config
from buxiban.data.tokenize import encode_conversation
from buxiban.models.adapt import make_trainable
from buxiban.models.load import load_model, resolve
from buxiban.train.batching import collate, epoch_batches
from buxiban.train.losses import reference_mean_loss, summed_token_loss
from buxiban.train.schedule import learning_rate

from conftest import chat_record

RECORDS = [
    chat_record("How much is the City plan?", "The City plan costs NT$690 per month."),
    chat_record("Is there a deposit?", "The deposit is NT$3,000.", "And hours?", "08:00 to 21:00 every day."),
    chat_record("The brakes failed", '{"team": "repairs", "priority": "urgent"}'),
    chat_record("你好", "我們每天 08:00 到 21:00 營業。", system=None),
]


def tiny_lora(tiny_model_dir):
    torch.manual_seed(0)
    config = load_config(None, ["data.train=x", "lora.r=4", "lora.alpha=8", "lora.dropout=0"])
    model = make_trainable(load_model(resolve(str(tiny_model_dir))), config)
    for name, param in model.named_parameters():  # LoRA B starts at zero; make the adapter matter
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model


def batch_of(tokenizer, records):
    return collate([encode_conversation(tokenizer, r["messages"]) for r in records], tokenizer.pad_token_id)


def test_trained_positions_only_loss_equals_full_logits_loss(tiny_model_dir, tiny_tokenizer):
    model = tiny_lora(tiny_model_dir)
    batch = batch_of(tiny_tokenizer, RECORDS)
    summed, count = summed_token_loss(model, **batch)
    assert count == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(summed / count, reference_mean_loss(model, **batch), rtol=1e-5, atol=1e-6)


def test_accumulation_equals_one_big_batch(tiny_model_dir, tiny_tokenizer):
    """One step on 4 examples == 2 micro-batches of 2 with the step's token count as divisor."""
    grads = []
    for split in ([RECORDS], [RECORDS[:2], RECORDS[2:]]):
        model = tiny_lora(tiny_model_dir)
        batches = [batch_of(tiny_tokenizer, part) for part in split]
        total = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        for b in batches:
            summed, _ = summed_token_loss(model, **b)
            (summed / total).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-7)


def test_padding_does_not_change_the_loss(tiny_model_dir, tiny_tokenizer):
    model = tiny_lora(tiny_model_dir)
    alone, n_alone = summed_token_loss(model, **batch_of(tiny_tokenizer, RECORDS[:1]))
    padded, _ = summed_token_loss(model, **batch_of(tiny_tokenizer, RECORDS[:2]))
    second, _ = summed_token_loss(model, **batch_of(tiny_tokenizer, RECORDS[1:2]))
    torch.testing.assert_close(padded, alone + second, rtol=1e-5, atol=1e-5)


def test_learning_rate_schedule_numbers():
    assert [round(learning_rate(s, 10, 1.0, 2, "cosine"), 4) for s in range(10)] == [
        0.5,
        1.0,
        1.0,
        0.9619,
        0.8536,
        0.6913,
        0.5,
        0.3087,
        0.1464,
        0.0381,
    ]
    assert [learning_rate(s, 6, 1.0, 0, "linear") for s in range(6)] == pytest.approx(
        [1.0, 5 / 6, 4 / 6, 0.5, 2 / 6, 1 / 6]
    )
    assert learning_rate(5, 6, 3e-4, 1, "constant") == 3e-4


def test_batches_cover_each_example_once_per_epoch_and_are_reproducible():
    lengths = [5, 50, 7, 90, 11, 3, 60, 8, 20, 31]
    first = epoch_batches(lengths, 3, seed=1, epoch=0)
    assert sorted(i for b in first for i in b) == list(range(10))
    assert first == epoch_batches(lengths, 3, seed=1, epoch=0)
    assert first != epoch_batches(lengths, 3, seed=1, epoch=1)


def test_chunked_head_gives_the_same_loss_and_gradients(tiny_model_dir, tiny_tokenizer):
    from buxiban.train.losses import chunked_head_loss

    model = tiny_lora(tiny_model_dir)
    hidden = torch.randn(10, model.config.hidden_size, requires_grad=True)
    targets = torch.randint(0, model.config.vocab_size, (10,))
    head = model.get_output_embeddings()
    results = []
    for chunk in (100, 3):  # one piece, then four pieces with recomputation
        hidden.grad = None
        loss = chunked_head_loss(head, hidden, targets, chunk=chunk)
        loss.backward()
        results.append((loss.detach(), hidden.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-7)


def test_padding_free_row_gives_the_padded_batchs_loss_and_gradients(tiny_model_dir, tiny_tokenizer, monkeypatch):
    """Packed conversations attend only within themselves: loss and every LoRA gradient match the padded
    batch (the tiny model has grouped-query attention, 4 heads over 2 key/value heads)."""
    import torch.nn.functional as F

    from buxiban.train import packing

    examples = [encode_conversation(tiny_tokenizer, r["messages"]) for r in RECORDS]
    results = []
    for packed in (False, True):
        model = tiny_lora(tiny_model_dir)
        calls = []
        if packed:
            assert packing.use_varlen_attention(model)
            sdpa = F.scaled_dot_product_attention
            monkeypatch.setattr(
                packing.F,
                "scaled_dot_product_attention",
                lambda q, *a, **k: calls.append(q.size(2)) or sdpa(q, *a, **k),
            )
        batch = packing.collate_packed(examples) if packed else collate(examples, tiny_tokenizer.pad_token_id)
        summed, count = summed_token_loss(model, **batch)
        summed.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((summed.item(), count, grads, calls))
    (padded, n_padded, padded_grads, _), (packed, n_packed, packed_grads, calls) = results
    assert n_packed == n_padded and packed == pytest.approx(padded, rel=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6)
    lengths = [len(e.input_ids) for e in examples]
    assert calls == lengths * 2  # one causal attention per conversation in each of the 2 layers


def test_packed_row_never_trains_across_a_boundary(tiny_tokenizer):
    from buxiban.data.tokenize import IGNORE_INDEX
    from buxiban.train.packing import collate_packed

    examples = [encode_conversation(tiny_tokenizer, r["messages"]) for r in RECORDS[:3]]
    batch = collate_packed(examples)
    starts = batch["packed_bounds"][:-1]
    assert batch["input_ids"].shape == (1, sum(len(e.input_ids) for e in examples))
    assert all(int(batch["labels"][0, s]) == IGNORE_INDEX for s in starts)
    assert all(int(batch["position_ids"][0, s]) == 0 for s in starts)


def test_packed_sliding_window_attention_is_each_conversations_own_band(tiny_tokenizer):
    """A window shorter than some conversations and longer than others: each conversation attends
    within itself and within the window, as a dense per-conversation band mask computes it."""
    from types import SimpleNamespace

    from buxiban.train.packing import sliding_band, varlen_attention

    torch.manual_seed(0)
    bounds, window, heads, kv_heads, width = (0, 5, 17, 20), 6, 4, 2, 8
    query = torch.randn(1, heads, bounds[-1], width)
    key, value = torch.randn(2, 1, kv_heads, bounds[-1], width)
    expected = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = (t[:, :, start:end] for t in (query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1)))
        steps = torch.arange(end - start)
        allowed = (steps[:, None] >= steps[None, :]) & (steps[:, None] - steps[None, :] < window)
        scores = (q @ k.transpose(-1, -2) / width**0.5).masked_fill(~allowed, float("-inf"))
        expected.append(torch.softmax(scores, -1) @ v)
    expected = torch.cat(expected, dim=2).transpose(1, 2)
    layer = SimpleNamespace(sliding_window=window)
    out, _ = varlen_attention(layer, query, key, value, None, packed_bounds=bounds)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    halves = varlen_attention(layer, query.bfloat16(), key.bfloat16(), value.bfloat16(), None, packed_bounds=bounds)[0]
    assert halves.dtype == torch.bfloat16
    torch.testing.assert_close(halves.float(), expected, rtol=0.05, atol=0.05)
    assert sliding_band(6, window, query.device) is None  # fits: plain causal attention
    band = sliding_band(7, window, query.device)
    assert band.tril().equal(band) and band.sum() == 7 * 8 // 2 - 1  # causal, less the last token's view of the first


def test_packed_attention_runs_in_fp32_under_cpu_autocast():
    """Autocast casts scaled_dot_product_attention's inputs to bf16 even when they arrive in fp32
    (rotary embeddings hand the query over in fp32), so the packed path switches autocast off: the
    result is the fp32 attention of the inputs, rounded to bf16 once."""
    from types import SimpleNamespace

    from buxiban.train import packing

    torch.manual_seed(0)
    layer, bounds = SimpleNamespace(sliding_window=None), (0, 9, 24)
    query = torch.randn(1, 4, 24, 16)
    key, value = torch.randn(2, 1, 2, 24, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = packing.varlen_attention(layer, query, key, value, None, packed_bounds=bounds)[0]
        in_bf16 = packing._per_conversation(query, key, value, bounds, None, True, 0.0, None)
    fp32 = packing.varlen_attention(layer, query, key.float(), value.float(), None, packed_bounds=bounds)[0]
    assert got.dtype == in_bf16.dtype == torch.bfloat16
    torch.testing.assert_close(got, fp32.bfloat16(), rtol=0, atol=0.008)
    assert not torch.equal(got, in_bf16), "bf16 attention rounds differently"


def test_frozen_linears_stored_in_bf16_give_bit_identical_loss_and_gradients(tiny_model_dir, tiny_tokenizer):
    """Autocast rounds each frozen fp32 weight to bf16 on every call; storing the rounded weight once
    must change nothing the loop computes."""
    from buxiban.models.adapt import store_frozen_linears_in

    batch = batch_of(tiny_tokenizer, RECORDS)
    results = []
    for stored_in_bf16 in (False, True):
        model = tiny_lora(tiny_model_dir)
        if stored_in_bf16:
            assert store_frozen_linears_in(model, torch.bfloat16) == 14  # 7 projections × 2 blocks
            frozen = [p for n, p in model.named_parameters() if "base_layer" in n]
            assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            summed, _ = summed_token_loss(model, **batch)
        summed.backward()
        results.append((summed.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (fp32_loss, fp32_grads), (bf16_loss, bf16_grads) = results
    assert torch.equal(fp32_loss, bf16_loss)
    assert all(torch.equal(bf16_grads[name], grad) for name, grad in fp32_grads.items())
    assert all(p.dtype == torch.float32 for p in bf16_grads.values())  # LoRA itself stays fp32


def test_frozen_head_cast_once_gives_autocasts_logits_and_gradients(tiny_model_dir):
    """The frozen head's weight cast to bf16 once and kept gives bit for bit what autocast's cast on
    every call gives, and is cast again when the weight changes."""
    from buxiban.train.losses import head_cast_once

    head = tiny_lora(tiny_model_dir).get_base_model().get_output_embeddings()
    hidden = torch.randn(5, head.in_features, requires_grad=True)
    results = []
    for cast_once in (False, True):
        hidden.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = (head_cast_once(head) if cast_once else head)(hidden)
        logits.float().square().sum().backward()
        results.append((logits.detach(), hidden.grad.clone()))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = head._cast_once[2]
        head_cast_once(head)
        assert head._cast_once[2] is kept  # reused, not cast again
        with torch.no_grad():
            head.weight.mul_(2)
        head_cast_once(head)
        assert torch.equal(head._cast_once[2], (head.weight * 1).bfloat16())
    assert head_cast_once(head) is head  # outside autocast: the head itself


def saved_bytes(step) -> int:
    """Bytes autograd keeps for backward while `step()` builds its graph."""
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: kept.append(t.numel() * t.element_size()) or t, lambda t: t
    ):
        result = step()
    return result, sum(kept)


def test_masked_dropout_keeps_the_configured_share_scales_to_the_same_mean_and_saves_a_bool_mask():
    from buxiban.train.dropout import MaskedDropout

    inputs = torch.randn(1000, 1000)
    for p in (0.05, 0.3):
        torch.manual_seed(3)
        x = inputs.clone().requires_grad_(True)
        out, kept_bytes = saved_bytes(lambda: MaskedDropout(p)(x))
        kept = out != 0  # randn is never exactly 0
        # a million Bernoulli draws: the kept share is within 5 standard deviations of 1 - p
        assert abs(kept.float().mean().item() - (1 - p)) < 5 * (p * (1 - p) / 1e6) ** 0.5
        scale = 65536 / round((1 - p) * 65536)
        assert torch.equal(out[kept], inputs[kept] * scale)
        gradient = torch.linspace(-1, 1, out.numel()).view_as(out)
        out.backward(gradient)
        assert torch.equal(x.grad, torch.where(kept, gradient * scale, 0))  # the same mask in backward
        assert kept_bytes == inputs.numel()  # one bool per element, not an fp32 noise value
    torch.manual_seed(3)
    again = MaskedDropout(0.3)(inputs.clone().requires_grad_(True))
    assert torch.equal(again != 0, kept)  # a seed gives the same mask
    rows = torch.stack([MaskedDropout(0.5)(torch.ones(64, requires_grad=True)) != 0 for _ in range(2048)])
    assert 0.4 < rows.float().mean(0).min() and rows.float().mean(0).max() < 0.6  # no position always kept


def test_lora_with_masked_dropout_is_seeded_and_saves_less(tiny_model_dir, tiny_tokenizer):
    from buxiban.train.dropout import use_masked_dropout

    batch = batch_of(tiny_tokenizer, RECORDS)
    config = load_config(None, ["data.train=x", "lora.r=4", "lora.alpha=8", "lora.dropout=0.2"])
    torch.manual_seed(0)
    plain = make_trainable(load_model(resolve(str(tiny_model_dir))), config).train()
    torch.manual_seed(0)
    masked = make_trainable(load_model(resolve(str(tiny_model_dir))), config).train()
    assert use_masked_dropout(masked) == 14  # one per adapted projection
    for model in (plain, masked):  # B starts at 0, which would hide any dropout from the loss
        torch.manual_seed(5)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.data.normal_(0, 0.5)
    (_, plain_kept) = saved_bytes(lambda: summed_token_loss(plain, **batch))
    losses = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        (summed, _), masked_kept = saved_bytes(lambda: summed_token_loss(masked, **batch))
        losses.append(summed.item())
    assert losses[0] == losses[1] and losses[0] != losses[2]
    assert masked_kept < plain_kept
    masked.eval()  # off in eval mode: the same loss as torch's dropout there
    plain.eval()
    with torch.no_grad():
        assert torch.equal(summed_token_loss(masked, **batch)[0], summed_token_loss(plain, **batch)[0])
