"""buxiban plan, the arithmetic: hosted billing with OpenAI's epoch rule, the price file, serving
costs, the memory model and the step schedule the time estimate scales by."""

import json

import pytest

from buxiban.errors import PlanError
from buxiban.plan.baseline import Baseline, target_verdict
from buxiban.plan.hosted import EpochRule, auto_epochs, billed_tokens, hosted_training, load_prices
from buxiban.plan.inference import per_request_usd, using_it
from buxiban.plan.local import step_stats, total_steps, validation_padded
from buxiban.plan.memory import Counts, ModelShape, estimate_peak, parameter_counts


def test_the_seeds_worked_example_costs_sixty_cents():
    # 100 conversations × 500 tokens × 4 epochs on GPT-4o mini = 200,000 training tokens = $0.60
    estimate = hosted_training([500] * 100, "gpt-4o-mini", load_prices(), epochs=4)
    assert estimate.dataset_tokens == 50_000
    assert estimate.billed_tokens == 200_000
    assert estimate.cost_usd == 0.60
    assert estimate.epochs_chosen == "given"


def test_the_price_file_holds_the_seeds_table_with_date_and_source():
    table = load_prices()
    assert table.models["gpt-4o"] == {"training": 25.0, "input": 3.75, "output": 15.0}
    assert table.models["gpt-4o-mini"] == {"training": 3.0, "input": 0.15, "output": 0.60}
    assert table.models["gpt-3.5-turbo"] == {"training": 8.0, "input": 3.0, "output": 6.0}
    assert table.read_on and "openai" in table.source.lower() and table.version >= 1
    assert table.rule == EpochRule()  # the file's constants are the cookbook's


@pytest.mark.parametrize(
    "examples, epochs",
    [
        (1, 25),
        (3, 25),
        (10, 10),
        (20, 5),
        (33, 3),
        (34, 3),  # small: raised toward 100 example-passes, at most 25
        (100, 3),
        (320, 3),
        (8_333, 3),  # medium: the default 3
        (8_334, 2),
        (10_000, 2),
        (12_501, 1),
        (30_000, 1),  # large: lowered toward 25,000 passes, at least 1
    ],
)
def test_openai_epoch_rule_on_small_medium_and_large_sets(examples, epochs):
    assert auto_epochs(examples) == epochs


def test_auto_epochs_and_the_per_example_cap_in_the_bill():
    estimate = hosted_training([20_000, 100], "gpt-4o", load_prices())
    assert estimate.epochs == 25 and estimate.epochs_chosen.startswith("auto")  # 2 examples: 100 // 2 = 50, capped
    assert estimate.dataset_tokens == 16_385 + 100
    assert estimate.billed_tokens == (16_385 + 100) * 25
    assert estimate.cost_usd == pytest.approx(billed_tokens([20_000, 100], 25) * 25 / 1e6)


def test_price_file_problems_are_reported_with_the_fix(tmp_path):
    with pytest.raises(PlanError, match="known models are gpt-3.5-turbo, gpt-4o, gpt-4o-mini"):
        load_prices().price("gpt-5")
    undated = tmp_path / "prices.json"
    undated.write_text(
        json.dumps({"version": 1, "source": "x", "models": {"m": {"training": 1, "input": 1, "output": 1}}})
    )
    with pytest.raises(PlanError, match="missing read_on"):
        load_prices(undated)
    negative = tmp_path / "negative.json"
    negative.write_text(
        json.dumps(
            {"version": 1, "source": "x", "read_on": "2026-01-01", "models": {"m": {"training": -1, "input": 1}}}
        )
    )
    with pytest.raises(PlanError, match="models.m: training, output"):
        load_prices(negative)
    with pytest.raises(PlanError, match="no training examples"):
        auto_epochs(0)


def test_the_seeds_usage_example_and_the_break_even():
    mini = load_prices().price("gpt-4o-mini")
    assert per_request_usd(1_000, 500, mini) == pytest.approx(0.00045)  # the seeds: 1,000 in + 500 out
    using = using_it(
        10_000,
        shots_tokens=1_000,
        short_tokens=200,
        output_tokens=500,
        prices=mini,
        price_per_hour=0.5,
        requests_per_second=10.0,
    )
    assert using["prompt_tokens_saved_per_request"] == 800
    assert using["monthly_usd"]["hosted_few_shot"] == pytest.approx(30 * 10_000 * 0.00045)
    assert using["monthly_usd"]["hosted_fine_tuned"] == pytest.approx(30 * 10_000 * (200 * 0.15 + 500 * 0.6) / 1e6)
    assert using["monthly_usd"]["self_hosted"] == pytest.approx(0.5 * 24 * 30)
    # a server costs $12 a day: break-even where the hosted bill reaches it
    assert using["break_even_daily_requests"]["vs_hosted_few_shot"] == 26_667  # ceil(12 / 0.00045)
    assert using["one_server_capacity_per_day"] == 864_000


def test_no_break_even_when_a_full_server_answers_less_than_it_costs():
    mini = load_prices().price("gpt-4o-mini")
    using = using_it(1_000, 100, 50, 10, mini, price_per_hour=2.0, requests_per_second=0.1)
    assert using["break_even_daily_requests"] == {"vs_hosted_few_shot": None, "vs_hosted_fine_tuned": None}
    assert using["servers"] == 1
    assert using_it(100_000, 100, 50, 10, mini, 2.0, 0.1)["servers"] == 12  # 100,000 a day at 8,640 per server


def test_target_verdict_says_whether_a_prompt_is_enough():
    baseline = Baseline(
        "test.jsonl",
        used=20,
        available=79,
        shots=3,
        scores={"zero-shot": {"exact_match": 0.3, "token_f1": 0.5}, "3-shot": {"exact_match": 0.85, "token_f1": 0.9}},
    )
    assert "fine-tuning may not be needed" in target_verdict(baseline, 0.8)
    assert "3-shot" in target_verdict(baseline, 0.8)
    assert "worth trying" in target_verdict(baseline, 0.9)
    assert target_verdict(baseline, None) is None


SMOL = ModelShape(layers=30, hidden=576, intermediate=1536, heads=9, kv_heads=3, head_dim=64, vocab=49152)


def test_memory_parts_follow_the_parameter_counts():
    full = Counts(trainable=134_515_008, total=134_515_008, block_linear=106_168_320, trained_blocks=30)
    estimate = estimate_peak(
        SMOL, full, "full", batch_tokens=8 * 128, trained_tokens=300, autocast=True, framework_bytes=0
    )
    parts = estimate["parts_mib"]
    assert parts["weights"] == pytest.approx(134_515_008 * 4 / 2**20, abs=0.1)
    assert parts["optimizer"] == pytest.approx(2 * parts["weights"], abs=0.2)  # AdamW: two fp32 states
    assert parts["gradients"] == pytest.approx(parts["weights"], abs=0.1)
    assert parts["logits"] == pytest.approx(300 * 49152 * 6 / 2**20, abs=0.1)  # bf16 head output + fp32 copy
    assert estimate["activation_bytes_per_token_per_layer"] == 16 * 576 + 2 * (5 * 576 + 4 * 576 + 4 * 1536)
    double = estimate_peak(SMOL, full, "full", 16 * 128, 300, True, 0)["parts_mib"]["activations"]
    assert double == pytest.approx(2 * parts["activations"], abs=0.2)  # linear in batch tokens
    checkpointed = estimate_peak(SMOL, full, "full", 8 * 128, 300, True, 0, gradient_checkpointing=True)
    assert checkpointed["parts_mib"]["activations"] < parts["activations"] / 5
    selective = estimate_peak(SMOL, full, "full", 8 * 128, 300, True, 0, gradient_checkpointing="selective")
    assert checkpointed["parts_mib"]["activations"] < selective["parts_mib"]["activations"] < parts["activations"]


def test_lora_keeps_more_activations_but_no_optimizer_state_for_the_base():
    lora = Counts(trainable=4_884_480, total=139_399_488, block_linear=106_168_320, trained_blocks=30)
    full = Counts(trainable=134_515_008, total=134_515_008, block_linear=106_168_320, trained_blocks=30)
    a = estimate_peak(SMOL, lora, "lora", 8 * 128, 300, True, 0)
    b = estimate_peak(SMOL, full, "full", 8 * 128, 300, True, 0)
    assert a["parts_mib"]["optimizer"] < b["parts_mib"]["optimizer"] / 20
    assert a["activation_bytes_per_token_per_layer"] > b["activation_bytes_per_token_per_layer"]
    # under bf16 autocast LoRA's frozen block weights are stored in bf16 and never cast per call
    assert a["parts_mib"]["weights"] == pytest.approx((106_168_320 * 2 + 33_231_168 * 4) / 2**20, abs=0.1)
    assert a["parts_mib"]["weight_casts"] == pytest.approx(49152 * 576 * 2 / 2**20, abs=0.1)  # the head only
    qlora = estimate_peak(SMOL, lora, "qlora", 8 * 128, 300, False, 0)
    assert qlora["parts_mib"]["weights"] < a["parts_mib"]["weights"] * 0.6


def test_parameter_counts_come_from_the_real_model_made_trainable(tiny_model_dir):
    from buxiban.config import load_config

    config = load_config(None, ["data.train=x.jsonl", "lora.r=8", "freeze.layers=1"])
    shape, lora = parameter_counts(str(tiny_model_dir), "lora", config)
    _, full = parameter_counts(str(tiny_model_dir), "full", config)
    _, freeze = parameter_counts(str(tiny_model_dir), "freeze", config)
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_width
    per_block = 8 * (
        (h + h) * 2 + (h + kv) * 2 + 2 * (h + i) + (i + h)
    )  # r × (in + out) for q, o, k, v, gate, up, down
    assert lora.trainable == shape.layers * per_block
    assert lora.total == full.total + lora.trainable
    assert full.trainable == full.total
    assert freeze.trained_blocks == 1 and 0 < freeze.trainable < full.total / 2


def test_step_stats_pad_each_batch_to_its_longest_row():
    from buxiban.train.batching import epoch_batches

    lengths = [10, 50, 20, 30, 40, 60, 70]
    trained = [1] * 7
    stats = step_stats(lengths, trained, batch_size=3, grad_accum=1, seed=5, steps=3)
    batches = epoch_batches(lengths, 3, 5, 0)
    assert stats.padded == [max(lengths[i] for i in b) * len(b) for b in batches]
    assert stats.longest_row == 70 and stats.most_trained == 3
    accumulated = step_stats(lengths, trained, batch_size=3, grad_accum=2, seed=5, steps=1)
    assert accumulated.padded == [stats.padded[0] + stats.padded[1]]
    assert validation_padded([5, 1, 3, 2], 2) == 2 * 2 + 5 * 2  # sorted: (1, 2), (3, 5)
    assert stats.most_batch_tokens == max(stats.padded)
    packed = step_stats(lengths, trained, batch_size=3, grad_accum=1, seed=5, steps=3, padding_free=True)
    assert packed.padded == [sum(lengths[i] for i in b) for b in batches]  # padding-free: real tokens only
    assert validation_padded([5, 1, 3, 2], 2, padding_free=True) == 11
    budgeted = step_stats(lengths, trained, batch_size=3, grad_accum=1, seed=5, steps=3, padding_free=True, budget=80)
    assert budgeted.padded == packed.padded  # the same tokens, in smaller pieces
    assert budgeted.most_batch_tokens <= 80 and budgeted.most_batch_tokens < packed.most_batch_tokens


def test_token_budget_pieces_keep_order_and_put_a_long_example_alone():
    from buxiban.train.batching import within_token_budget

    assert within_token_budget([30, 40, 20, 90, 10], 60) == [[0], [1, 2], [3], [4]]
    assert within_token_budget([30, 40], 0) == [[0, 1]]
    assert within_token_budget([], 60) == []


def test_total_steps_match_the_training_loop():
    from buxiban.config import load_config

    config = load_config(None, ["data.train=x.jsonl", "train.batch_size=8", "train.epochs=4"])
    assert total_steps(config, 288) == (36, 144)
    config = load_config(None, ["data.train=x.jsonl", "train.batch_size=8", "train.max_steps=12"])
    assert total_steps(config, 288) == (36, 12)


def test_baseline_few_shot_prompts_are_evals_per_task_draw(tmp_path, monkeypatch):
    """plan's few-shot number must be the one `buxiban eval` reports later: shots of the test prompt's own task."""
    import buxiban.models.generate as generate
    from buxiban.plan.baseline import measure_baseline

    from conftest import chat_record, write_jsonl

    faq, router = "You answer FAQs.", "You route tickets as JSON."
    train = [chat_record(f"faq {i}", f"answer {i}", system=faq) for i in range(6)]
    train += [chat_record(f"ticket {i}", '{"team": "repairs"}', system=router) for i in range(6)]
    test = [
        chat_record("faq question", "answer 0", system=faq),
        chat_record("ticket x", '{"team": "repairs"}', system=router),
    ]
    seen = {}

    def fake_generate(model, tokenizer, prompts, max_new_tokens, batch_size):
        seen[len(seen)] = prompts
        return ["answer 0", '{"team": "repairs"}']

    class Tok:
        def encode(self, text, add_special_tokens=False):
            return text.split()

    monkeypatch.setattr(generate, "generate_answers", fake_generate)
    monkeypatch.setattr("buxiban.data.tokenize.encode_prompt", lambda tok, prompt: prompt)
    result = measure_baseline(
        None, Tok(), write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "test.jsonl", test), shots=2
    )
    faq_prompt, router_prompt = seen[1]
    assert all(m["content"].startswith(("faq", "answer")) for m in faq_prompt[1:])
    assert all(m["content"].startswith(("ticket", '{"team"')) for m in router_prompt[1:])
    assert result.scores["2-shot"]["exact_match"] == 1.0 and result.scores["2-shot"]["field_match"] == 1.0
