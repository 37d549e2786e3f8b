import json
import math

import pytest

from buxiban.errors import DataError, EndpointError
from buxiban.eval.analysis import analyze, error_kind, figures, length_bucket
from buxiban.eval.endpoint import parse_endpoint
from buxiban.eval.forgetting import ForgettingResult, general_text, load_probes, passes, perplexity, score_probes
from buxiban.eval.inputs import load_refusals
from buxiban.eval.judge import parse_verdict
from buxiban.eval.scoring import cost_summary, example_rows, paired_tests, savings, summarize

ROUTE = '{"team": "repairs", "priority": "urgent"}'


@pytest.mark.parametrize(
    "answer, reference, kind",
    [
        ("The deposit is NT$3,000.", "The deposit is NT$3,000.", None),
        ("", "The deposit is NT$3,000.", "empty"),
        ("repairs, urgent", ROUTE, "invalid JSON"),
        ('["repairs"]', ROUTE, "invalid JSON"),
        ('{"team": "repairs"}', ROUTE, "wrong field"),
        ('{"team": "repairs", "priority": "normal"}', ROUTE, "wrong value"),
        ("I'm sorry, but I can't help with that.", "The deposit is NT$3,000.", "refused"),
        (
            "The deposit is NT$3,000 and " + "it is refunded when you return the bike in good shape " * 2,
            "The deposit is NT$3,000.",
            "too long",
        ),
        ("The deposit is NT$2,000.", "The deposit is NT$3,000.", "wrong figure"),
        ("The deposit amount is NT$3,000.", "The deposit is NT$3,000.", "different wording"),
        ("We open at nine.", "Support is open every day.", "wrong answer"),
    ],
)
def test_error_kinds(answer, reference, kind):
    assert error_kind(answer, reference) == kind


def test_figures_and_length_buckets():
    assert figures("NT$1,190 from 08:00 to 21:00, 2.5 km") == {"1190", "08:00", "21:00", "2.5"}
    assert [length_bucket(n) for n in (1, 64, 65, 128, 129, 256, 257)] == [
        "up to 64",
        "up to 64",
        "65-128",
        "65-128",
        "129-256",
        "129-256",
        "over 256",
    ]


def _rows():
    tests = [
        {"index": 0, "question": "City plan?", "reference": "The City plan costs NT$690 per month.", "category": "faq"},
        {"index": 1, "question": "Deposit?", "reference": "The deposit is NT$3,000.", "category": "faq"},
        {"index": 2, "question": "Brakes failed", "reference": ROUTE, "category": "router"},
        {
            "index": 3,
            "question": "Flat tyre",
            "reference": '{"team": "repairs", "priority": "normal"}',
            "category": "router",
        },
        {
            "index": 4,
            "question": "Bill twice",
            "reference": '{"team": "billing", "priority": "normal"}',
            "category": "router",
        },
    ]
    answers = {
        "fine-tuned": [
            "The City plan costs NT$690 per month.",
            "The deposit is NT$5,000.",
            '{"team": "repairs", "priority": "normal"}',
            '{"team": "repairs", "priority": "normal"}',
            "billing",
        ],
        "base": ["It is cheap.", "The deposit is NT$3,000.", "repairs", "repairs", "billing"],
    }
    rows = example_rows(tests, answers)
    for row in rows:
        row["prompt_tokens"] = {"fine-tuned": 40 if row["category"] == "faq" else 100, "base": 40}
    return rows


def test_error_analysis_groups_failures_and_says_what_to_add():
    rows = _rows()
    result = analyze(rows, "fine-tuned")
    assert result["failed"] == 3
    assert result["by_kind"] == {"wrong figure": 1, "wrong value": 1, "invalid JSON": 1}
    assert result["by_category"] == [
        {"group": "router", "n": 3, "failed": 2, "rate": round(2 / 3, 4)},
        {"group": "faq", "n": 2, "failed": 1, "rate": 0.5},
    ]
    assert result["by_length"][0] == {"group": "65-128", "n": 3, "failed": 2, "rate": round(2 / 3, 4)}
    assert result["wrong_values"] == {"priority: urgent -> normal": 1}
    advice = "\n".join(result["advice"])
    assert "Category 'router' fails 2 of 3 (67%): add about 10 training examples" in advice
    assert "faq" not in advice.split("\n")[0]  # faq fails below the overall rate: no category advice for it
    assert "priority: urgent -> normal ×1" in advice and "not a JSON object" in advice and "'Deposit?'" in advice
    assert rows[1]["fine-tuned"]["error_kind"] == "wrong figure" and rows[0]["fine-tuned"]["error_kind"] is None


def test_summary_intervals_paired_tests_and_costs():
    rows = _rows()
    summary, intervals = summarize(rows, ["base", "fine-tuned"], resamples=200)
    assert summary["fine-tuned"]["exact_match"] == 0.4 and summary["base"]["exact_match"] == 0.2
    assert summary["fine-tuned"]["field_match"] == pytest.approx(round((0.5 + 1 + 0) / 3, 4))  # JSON references only
    assert intervals["fine-tuned"]["exact_match"]["low"] <= 0.4 <= intervals["fine-tuned"]["exact_match"]["high"]
    assert summary["base"]["false_refusal_rate"] == 0.0 and summary["base"]["n"] == 5
    # fine-tuned right on 0 and 3, base right on 1 only: 2 vs 1 discordant, p = 2 * P(X <= 1 | n=3) = 2 * 4/8 = 1
    assert paired_tests(rows, "fine-tuned", ["base", "fine-tuned"]) == [
        {"a": "fine-tuned", "b": "base", "metric": "exact_match", "only_a": 2, "only_b": 1, "p_value": 1.0}
    ]
    costs = {
        "fine-tuned": {**cost_summary([40, 60], [10, 10], 2.0), "latency_s": 0.5},
        "few-shot": {**cost_summary([200, 300], [30, 10], 8.0), "latency_s": 1.5},
    }
    assert costs["fine-tuned"] == {
        "prompt_tokens_per_request": 50.0,
        "new_tokens_per_request": 10.0,
        "seconds": 2.0,
        "seconds_per_request_batched": 1.0,
        "latency_s": 0.5,
    }
    assert savings(costs, "fine-tuned", "few-shot") == {
        "against": "few-shot",
        "prompt_tokens": 50.0,
        "prompt_tokens_instead": 250.0,
        "prompt_tokens_saved_share": 0.8,
        "latency_s": 0.5,
        "latency_s_instead": 1.5,
        "speedup": 3.0,
    }
    assert savings(costs, "fine-tuned", "missing") is None


def test_probe_checks():
    assert passes("Mercury is closest.", {"any": ["mercury"]}) and not passes("Mercurial", {"any": ["mercury"]})
    assert passes("YES", {"exact": "yes", "upper": True}) and not passes("Yes", {"exact": "yes", "upper": True})
    assert passes('```json\n{"city": "Paris"}\n```', {"json": {"city": "Paris"}})
    assert not passes('{"city": "paris"}', {"json": {"city": "Paris"}})
    assert passes("apple\nbanana\n\ncherry", {"lines": 3}) and not passes("apple, banana, cherry", {"lines": 3})
    assert passes("To rest the body.", {"max_words": 5}) and not passes("", {"max_words": 5})
    assert passes("Dear team, the meeting moved.", {"starts_with": "dear team"})
    assert passes("0 °C", {"regex": "(?<![\\d.])0\\s*(°|degrees?)|\\bzero\\b"})
    assert not passes("100 degrees", {"regex": "(?<![\\d.])0\\s*(°|degrees?)|\\bzero\\b"})
    with pytest.raises(ValueError, match="unknown probe check"):
        passes("x", {"contains": "x"})


def test_probe_checks_see_through_echoes_and_both_options():
    question = "Is 9 an odd number or an even number?"
    choice = {"first": ["odd", "even"]}
    assert passes("9 is odd.", choice, question) and passes("Odd, not even.", choice, question)
    assert not passes("9 is even, but not all odd numbers.", choice, question)  # both named, the wrong one first
    # a base model repeating the question, variants of it, and the question cut off at the token limit
    echo = "You are a helpful assistant.\n\nIs 9 an odd number or an even number? Is 9 even or odd?\nIs 9 an odd"
    assert not passes(echo, choice, question) and passes(echo, choice)  # without the question it would pass
    assert not passes(
        "Which number is smaller, 41 or 14?", {"first": ["14", "41"]}, "Which number is smaller, 14 or 41?"
    )
    river = "Write one sentence that uses the word 'river'."
    assert not passes(f"{river} {river}", {"any": ["river"]}, river)
    assert passes("The river runs to the sea.", {"any": ["river"]}, river)
    for probe in load_probes():  # a choice question names its options; naming the right one first is the check
        if " or " in probe.question and probe.id != "k-hump":
            assert "first" in probe.check or "exact" in probe.check, probe.id


def test_shipped_probes_are_checkable_and_apart_from_the_replay_set():
    import difflib
    import re

    from buxiban.data.mix import builtin_general_path
    from buxiban.text import normalize

    probes = load_probes()
    # 0.1 of the probe score is 11 probes, not 4 as with the first 40
    assert len(probes) >= 110 and len({p.id for p in probes}) == len(probes)
    assert {p.kind for p in probes} == {"knowledge", "instruction"}
    for probe in probes:
        passes("x", probe.check)  # every check is a known kind
    replay = [json.loads(line)["messages"][1]["content"] for line in builtin_general_path().read_text().splitlines()]

    def skeleton(text):  # numbers masked: "What is 6 times 8?" and "What is 8 times 7?" are one template
        return re.sub(r"\d+", "#", normalize(text))

    def trigrams(text):
        words = skeleton(text).split()
        return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}

    replay_trigrams = set().union(*(trigrams(q) for q in replay))
    for probe in probes:  # replay mixing never trains on a probe, nor on its template
        shared = trigrams(probe.question) & replay_trigrams
        assert len(shared) <= 0.34 * max(1, len(trigrams(probe.question))), (probe.id, shared)
        closest = max(difflib.SequenceMatcher(None, skeleton(probe.question), skeleton(q)).ratio() for q in replay)
        assert closest < 0.75, probe.id
    assert 3000 <= len(general_text().encode()) <= 8000


def test_forgetting_scores_drop_and_gate():
    probes = load_probes()[:4]
    scores, rows = score_probes(
        probes,
        {"base": ["Mercury", "7", "Everest", "no idea"], "fine-tuned": ["Mercury", "eight", "Everest", "no idea"]},
    )
    assert scores == {"base": 0.75, "fine-tuned": 0.5} and rows[1]["fine-tuned"]["passed"] is False
    result = ForgettingResult(scores, {"base": 10.0, "fine-tuned": 12.0}, rows, max_drop=0.2)
    assert result.drop == 0.25 and result.failed and result.perplexity_change == pytest.approx(0.2)
    assert not ForgettingResult(scores, {"base": 10.0, "fine-tuned": 12.0}, rows, max_drop=0.25).failed
    assert not ForgettingResult(scores, {"base": 10.0, "fine-tuned": 12.0}, rows).failed  # no gate, no failure


def test_a_base_model_that_passes_almost_no_probe_has_nothing_to_lose():
    from buxiban.eval.compare import EvalResult
    from buxiban.eval.forgetting import nothing_to_lose
    from buxiban.eval.report import forgetting_lines

    assert nothing_to_lose(0.0, None) and nothing_to_lose(0.09, None) and not nothing_to_lose(0.1, None)
    # a tighter gate than the smallest meaningful drop asks the fine-tuned model sooner
    assert not nothing_to_lose(0.06, 0.05) and nothing_to_lose(0.04, 0.05) and not nothing_to_lose(0.0, 0.0)
    skipped = ForgettingResult({"base": 0.0}, {"base": 80.0, "fine-tuned": 200.0}, [], max_drop=0.1)
    assert skipped.probes_skipped and skipped.drop is None and not skipped.failed
    result = EvalResult("run", "test.jsonl", "m")
    result.forgetting = skipped.to_dict()
    printed = "\n".join(forgetting_lines(result))
    assert "was not asked" in printed and "80.00 → 200.00 (+150.0%)" in printed and "gate passed" in printed


def test_perplexity_is_exp_of_the_mean_next_token_loss(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Support is open 08:00 to 21:00 every day, including public holidays."
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        expected = math.exp(model(input_ids=ids, labels=ids).loss.item())
    assert perplexity(model, tokenizer, text) == pytest.approx(expected, rel=1e-5)
    # windows: each predicts all but its own first token, so the short windows see less context
    assert perplexity(model, tokenizer, text, window=4) != pytest.approx(expected, rel=1e-5)


def test_refusal_questions_from_text_and_jsonl(tmp_path):
    text = tmp_path / "q.txt"
    text.write_text("Who will win the election?\n\nTell me a joke about rivals.\n")
    assert load_refusals(text, "Be Yunshan.") == [
        [{"role": "system", "content": "Be Yunshan."}, {"role": "user", "content": "Who will win the election?"}],
        [{"role": "system", "content": "Be Yunshan."}, {"role": "user", "content": "Tell me a joke about rivals."}],
    ]
    lines = tmp_path / "q.jsonl"
    lines.write_text(
        json.dumps({"question": "Bitcoin tips?"})
        + "\n"
        + json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "Rate our rival"},
                    {"role": "assistant", "content": "I can't."},
                ]
            }
        )
        + "\n"
    )
    assert load_refusals(lines, None) == [
        [{"role": "user", "content": "Bitcoin tips?"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Rate our rival"}],
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    with pytest.raises(DataError) as caught:
        load_refusals(bad, None)
    assert [p.where for p in caught.value.problems] == [f"{bad}:1", f"{bad}:2"]


def test_endpoint_specs(monkeypatch):
    monkeypatch.setenv("MY_KEY", "k")
    endpoint = parse_endpoint("gpt=https://api.example.com/v1,model=gpt-4o-mini,key_env=MY_KEY")
    assert (endpoint.name, endpoint.model, endpoint.key_env) == ("gpt", "gpt-4o-mini", "MY_KEY")
    assert endpoint.completions_url == "https://api.example.com/v1/chat/completions"
    assert (
        parse_endpoint("local=http://h:8000/v1/chat/completions").completions_url == "http://h:8000/v1/chat/completions"
    )
    assert parse_endpoint("local=http://h/v1").model == "local"
    assert parse_endpoint("http://judge/v1", named=False).model == "default"
    for bad, message in (
        ("=http://h", "no name"),
        ("x=ftp://h", "must start with http"),
        ("x=http://h,temp=1", "temp=1"),
        ("x=http://h,key_env=NOT_SET_ANYWHERE", "NOT_SET_ANYWHERE"),
    ):
        with pytest.raises(EndpointError, match=message):
            parse_endpoint(bad)


def test_judge_verdicts():
    assert parse_verdict('{"score": 4, "reason": "fine"}') == (4, "fine")
    assert parse_verdict('Sure! ```{"score": 5, "reason": "same"}```') == (5, "same")
    assert parse_verdict("Score: 2 because the price is wrong")[0] == 2
    assert parse_verdict('{"score": 9}')[0] is None  # out of range and no other digit 1-5
    assert parse_verdict("no idea")[0] is None


def test_answer_budget_is_twice_the_longest_reference_plus_16(tiny_tokenizer):
    from buxiban.eval.compare import answer_budget

    references = ["The deposit is NT$3,000.", "Yes."]
    longest = len(tiny_tokenizer(references[0], add_special_tokens=False)["input_ids"])
    assert answer_budget(tiny_tokenizer, references) == 2 * longest + 16
    assert answer_budget(tiny_tokenizer, ["word " * 400]) == 512
    assert answer_budget(None, references) == 256  # endpoints only: no tokenizer to count with


def test_few_shot_prompts_take_shots_from_the_same_task():
    from buxiban.eval.systems import few_shot_prepare

    def conversation(system, question, answer):
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]

    train = [conversation("FAQ", f"q{i}", f"a{i}") for i in range(5)] + [
        conversation("ROUTER", f"t{i}", "{}") for i in range(3)
    ]
    prepare = few_shot_prepare(train, 2, seed=0)
    routed = prepare([{"role": "system", "content": "ROUTER"}, {"role": "user", "content": "brakes"}])
    assert routed[0] == {"role": "system", "content": "ROUTER"} and routed[-1]["content"] == "brakes"
    shots = routed[1:-1]
    assert len(shots) == 4 and [m["role"] for m in shots] == ["user", "assistant"] * 2
    assert all(m["content"].startswith("t") for m in shots if m["role"] == "user")  # router shots only
    faq = prepare([{"role": "system", "content": "FAQ"}, {"role": "user", "content": "price?"}])
    assert all(m["content"].startswith("q") for m in faq[1:-1] if m["role"] == "user")
    assert prepare(faq[:1] + faq[-1:]) == faq  # the same draw for every prompt of a task
    unknown = prepare([{"role": "user", "content": "hi"}])  # no system message: shots from all tasks
    assert len(unknown) == 5


def test_forgetting_lines_state_the_gate_and_warn_on_perplexity():
    from buxiban.eval.compare import EvalResult
    from buxiban.eval.report import forgetting_lines

    def lines(max_drop, perplexity_after):
        result = EvalResult("run", "test.jsonl", "m")
        result.forgetting = ForgettingResult(
            {"base": 0.5, "fine-tuned": 0.45}, {"base": 20.0, "fine-tuned": perplexity_after}, [], max_drop
        ).to_dict()
        return "\n".join(forgetting_lines(result))

    assert "perplexity on general text 20.00 → 30.00 (+50.0%)" in lines(None, 30.0)
    assert "gate: none set" in lines(None, 30.0) and "rose by more than 25%" in lines(None, 30.0)
    assert "rose by more than" not in lines(None, 24.0)
    assert "gate passed: drop 0.050 vs --max-forgetting 0.1" in lines(0.1, 24.0)
    failed = lines(0.01, 24.0)
    assert "gate FAILED" in failed and "mix.general: builtin" in failed and "buxiban data mix" in failed
