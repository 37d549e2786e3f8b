import base64
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from buxiban.cli import main
from buxiban.eval.metrics import exact_match, token_f1
from buxiban.eval.report import word_diff
from buxiban.text import normalize

from conftest import RECORDS, train_tiny, write_jsonl


def test_exact_match_normalizes_text_and_compares_json_as_data():
    assert exact_match("the city plan costs NT$690 per month", "The City plan costs NT$690 per month.")
    assert not exact_match("The City plan costs NT$790 per month.", "The City plan costs NT$690 per month.")
    assert exact_match('{"priority": "urgent", "team": "repairs"}', '{"team": "repairs", "priority": "urgent"}')
    assert not exact_match('{"team": "repairs"}', '{"team": "repairs", "priority": "urgent"}')
    assert not exact_match("team repairs priority urgent", '{"team": "repairs", "priority": "urgent"}')
    assert normalize("  Ｈello,   WORLD! ") == "hello world"


def test_chinese_answers_match_across_width_spacing_and_thousands_separators():
    reference = "搬家費用為新台幣 3,800 元。"
    for said in ("搬家費用為新台幣3,800元。", "搬家費用為新台幣３，８００元", "搬家費用為 新台幣 3800 元 。"):
        assert exact_match(said, reference), said
    assert not exact_match("搬家費用為新台幣 3,900 元。", reference)
    assert not exact_match("搬家費用為新台幣 38,000 元。", reference)
    assert not exact_match("費用為新台幣 3,800 元。", reference)
    assert normalize("用 LINE Pay 付款，1,190 元") == "用line pay付款1190元"
    assert token_f1("搬家費用為新台幣3,800元", reference) == 1.0


def test_token_f1_numbers():
    assert token_f1("the deposit is NT$3,000", "The deposit is NT$3,000.") == 1.0
    assert token_f1("", "") == 1.0
    assert token_f1("completely different", "the deposit") == 0.0
    # 2 shared of 3 predicted and 4 expected: P=2/3, R=1/2, F1=4/7
    assert token_f1("deposit is huge", "the deposit is small") == pytest.approx(4 / 7)
    assert token_f1("每天營業", "我們每天營業") == pytest.approx(2 * 1 * (4 / 6) / (1 + 4 / 6))


def test_word_diff_marks_missing_and_extra_words():
    assert (
        word_diff("The plan costs NT$790 monthly.", "The plan costs NT$690 per month.")
        == "The plan costs [-NT$690 per month.-] {+NT$790 monthly.+}"
    )


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    train = write_jsonl(root / "train.jsonl", RECORDS)
    return train_tiny(tiny_model_dir, train, root / "run"), train


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers like an OpenAI-compatible server: the reference for known questions, a refusal for
    off-topic ones; as the judge, 5 when the graded answer equals the reference, else 2."""

    answers = {
        "How much is the City plan?": "The City plan costs NT$690 per month.",
        "Is there a deposit?": "No deposit.",
        "The brakes failed": '{"team": "repairs", "priority": "urgent"}',
    }
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.seen.append((self.path, self.headers.get("Authorization"), body))
        last = body["messages"][-1]["content"]
        if body["messages"][0]["content"].startswith("You grade"):
            reference, answer = re.search(r"Reference answer:\n(.*)\n\nAnswer to grade:\n(.*)", last, re.S).groups()
            text = json.dumps({"score": 5 if answer == reference else 2, "reason": "compared"})
        else:
            text = self.answers.get(last, "I'm sorry, but I can't help with that.")
        payload = json.dumps(
            {
                "choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeOpenAI.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_eval_cli_writes_reports_with_every_system(tiny_run, tmp_path, capsys, monkeypatch):
    import buxiban.eval.forgetting as forgetting

    run, train = tiny_run
    probes = forgetting.load_probes()[:8]  # the whole set is checked in test_eval_units; 8 keep this test quick
    monkeypatch.setattr(forgetting, "load_probes", lambda: probes)
    out = tmp_path / "report"
    assert (
        main(
            [
                "eval",
                str(run),
                "--test",
                str(train),
                "--max-new-tokens",
                "24",
                "--shots",
                "2",
                "--out",
                str(out),
                "--resamples",
                "200",
                "--latency-samples",
                "1",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| base |" in printed and "| few-shot |" in printed and "| fine-tuned |" in printed
    assert "exact McNemar p = " in printed and "savings:" in printed and "forgetting:" in printed
    report = json.loads((out / "eval.json").read_text())
    assert [s["name"] for s in report["systems"]] == ["base", "few-shot", "fine-tuned"]
    assert [e["where"] for e in report["examples"]] == [f"{train}:{n}" for n in range(1, 5)]
    for system in ("base", "few-shot", "fine-tuned"):
        summary, interval = report["summary"][system], report["intervals"][system]["token_f1"]
        assert summary["n"] == 4 and interval["low"] <= summary["token_f1"] <= interval["high"]
        assert summary["field_match"] == report["examples"][3][system]["field_match"]  # one JSON reference
    # trained on these very examples at a high rate, the adapter must beat the random base
    assert report["summary"]["fine-tuned"]["token_f1"] > report["summary"]["base"]["token_f1"]
    # the few-shot prompt carries two training conversations more than the plain one
    shots = (
        report["costs"]["few-shot"]["prompt_tokens_per_request"] - report["costs"]["base"]["prompt_tokens_per_request"]
    )
    assert (
        shots > 20
        and report["savings"]["prompt_tokens_instead"] == report["costs"]["few-shot"]["prompt_tokens_per_request"]
    )
    assert [t["b"] for t in report["significance"]] == ["base", "few-shot"]
    assert report["forgetting"]["failed"] is False and len(report["forgetting"]["probes"]) == 8
    assert report["forgetting"]["perplexity"]["base"] > 1 and report["seconds"]["forgetting"] > 0
    # the random tiny base passes no knowledge probe, so there is nothing to lose and the fine-tuned
    # model is not asked them (eval/forgetting.py); perplexity is still taken on both
    assert report["forgetting"]["probe_scores"] == {"base": 0.0} and report["forgetting"]["probes_skipped"]
    assert "fine-tuned" in report["forgetting"]["perplexity"] and "was not asked" in printed
    markdown = (out / "eval.md").read_text()
    assert "## Every example" in markdown and "How much is the City plan?" in markdown


def test_html_report_is_self_contained_with_real_png_plots(tiny_run, tmp_path):
    from PIL import Image

    run, train = tiny_run
    assert (
        main(
            [
                "eval",
                str(run),
                "--test",
                str(train),
                "--max-new-tokens",
                "8",
                "--shots",
                "0",
                "--no-forgetting",
                "--out",
                str(tmp_path),
                "--resamples",
                "100",
            ]
        )
        == 0
    )
    html = (tmp_path / "eval.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", html)  # no asset from the network
    assert "http://" not in html and "https://" not in html and "<script" not in html
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 2  # scores with intervals, loss curves
    for encoded in images:
        png = base64.b64decode(encoded, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            assert image.format == "PNG" and image.width > 200 and image.height > 100
    assert "<del>" in html or "<ins>" in html or html.count("✓") >= 4


def test_endpoints_judge_and_refusals(tiny_run, tmp_path, fake_server, monkeypatch, capsys):
    run, train = tiny_run
    refusals = tmp_path / "off_topic.txt"
    refusals.write_text("Who will win the election?\nWrite me a poem about your competitor.\n")
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    assert (
        main(
            [
                "eval",
                str(run),
                "--test",
                str(train),
                "--max-new-tokens",
                "8",
                "--shots",
                "0",
                "--no-forgetting",
                "--endpoint",
                f"remote={fake_server},model=big-model,key_env=FAKE_KEY",
                "--judge",
                fake_server,
                "--refusals",
                str(refusals),
                "--out",
                str(tmp_path / "r"),
                "--resamples",
                "100",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "r" / "eval.json").read_text())
    remote = report["summary"]["remote"]
    # the fake server knows 2 of 4 answers exactly, refuses the unknown one ("When is support open?")
    assert remote["exact_match"] == 0.5 and remote["false_refusal_rate"] == 0.25
    assert remote["judge"] == pytest.approx((2 * 1.0 + 2 * 0.25) / 4)  # scores 5, 2, 2, 5 -> (s - 1) / 4
    assert report["refusals"]["systems"]["remote"]["refusal_rate"] == 1.0
    assert report["costs"]["remote"]["prompt_tokens_per_request"] == 11
    chat_calls = [(path, auth, body) for path, auth, body in FakeOpenAI.seen if body["model"] == "big-model"]
    assert len(chat_calls) == 4 + 2 and all(
        path == "/v1/chat/completions" and auth == "Bearer sk-test" for path, auth, _ in chat_calls
    )
    assert all(body["temperature"] == 0 for _, _, body in chat_calls)
    assert "refusals on 2 out-of-scope questions" in capsys.readouterr().out


def test_unreachable_endpoint_is_an_error_before_any_generation(tiny_run, capsys):
    run, train = tiny_run
    assert main(["eval", str(run), "--test", str(train), "--endpoint", "nourl"]) == 1
    assert "has no name" in capsys.readouterr().err
    assert main(["eval", str(run), "--test", str(train), "--endpoint", "x=http://h,key_env=BUXIBAN_UNSET_VAR"]) == 1
    assert "BUXIBAN_UNSET_VAR" in capsys.readouterr().err
    assert main(["eval", "--test", str(train)]) == 2
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                str(run),
                "--test",
                str(train),
                "--max-forgetting",
                "5",
                "--shots",
                "-1",
                "--train",
                "nowhere.jsonl",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err  # every bad option reported at once
    assert "--max-forgetting 5" in err and "--shots -1" in err and "--train nowhere.jsonl: no such file" in err


def test_forgetting_gate_fails_the_command_after_writing_the_report(tiny_run, tmp_path, monkeypatch, capsys):
    import buxiban.eval.forgetting as forgetting

    run, train = tiny_run
    probes = forgetting.load_probes()[:4]
    monkeypatch.setattr(forgetting, "load_probes", lambda: probes)
    answers = {
        "base": ["Mercury", "7", "Everest", "Shakespeare"],
        "fine-tuned": ["Mercury", "The deposit.", "Everest", "x"],
    }
    original = forgetting.score_probes
    monkeypatch.setattr(forgetting, "score_probes", lambda p, _: original(p, answers))
    args = [
        "eval",
        str(run),
        "--test",
        str(train),
        "--max-new-tokens",
        "4",
        "--shots",
        "0",
        "--out",
        str(tmp_path),
        "--resamples",
        "100",
    ]
    # base passes 4 of 4 probes, fine-tuned 2 of 4: a drop of 0.5
    assert main(args + ["--max-forgetting", "0.5"]) == 0
    assert "forgetting gate passed" in capsys.readouterr().out
    assert main(args + ["--max-forgetting", "0.25"]) == 1
    printed = capsys.readouterr().out
    assert "forgetting gate FAILED: drop 0.500" in printed and "mix.general: builtin" in printed
    report = json.loads((tmp_path / "eval.json").read_text())  # written before the command failed
    assert report["forgetting"]["failed"] is True and report["forgetting"]["drop"] == 0.5
    assert "buxiban data mix" in (tmp_path / "eval.html").read_text()


def test_compare_lists_what_each_run_fixed_and_broke(tiny_model_dir, tmp_path, capsys):
    """Two runs trained on different data: A never saw the deposit and support answers, B never saw
    the plan price. Whatever each learned, --compare must list exactly the examples whose exact match
    flipped between their own evaluations."""
    test = write_jsonl(tmp_path / "test.jsonl", RECORDS)
    run_a = train_tiny(tiny_model_dir, write_jsonl(tmp_path / "a.jsonl", [RECORDS[0], RECORDS[3]] * 2), tmp_path / "a")
    run_b = train_tiny(tiny_model_dir, write_jsonl(tmp_path / "b.jsonl", RECORDS[1:]), tmp_path / "b")
    for run in (run_a, run_b):
        assert (
            main(
                [
                    "eval",
                    str(run),
                    "--test",
                    str(test),
                    "--max-new-tokens",
                    "24",
                    "--shots",
                    "0",
                    "--no-forgetting",
                    "--resamples",
                    "100",
                    "--latency-samples",
                    "0",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["eval", "--compare", str(run_a), str(run_b), "--test", str(test), "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    right = {}
    for name, run in (("a", run_a), ("b", run_b)):
        right[name] = [
            e["fine-tuned"]["exact_match"] for e in json.loads((run / "eval" / "eval.json").read_text())["examples"]
        ]
    questions = [r["messages"][1]["content"] for r in RECORDS]
    assert [i["question"] for i in comparison["fixed"]] == [
        q for q, a, b in zip(questions, right["a"], right["b"]) if b and not a
    ]
    assert [i["question"] for i in comparison["broken"]] == [
        q for q, a, b in zip(questions, right["a"], right["b"]) if a and not b
    ]
    assert comparison["fixed"] or comparison["broken"]  # different data, different answers
    assert (run_b / "eval" / "compare" / "compare.md").is_file()


def _eval_json(path, answers):
    examples = [
        {
            "index": i,
            "where": f"t.jsonl:{i + 1}",
            "question": q,
            "reference": "yes",
            "fine-tuned": {"answer": a, "exact_match": a == "yes"},
        }
        for i, (q, a) in enumerate(answers)
    ]
    path.write_text(json.dumps({"summary": {"fine-tuned": {}}, "examples": examples}))
    return path


def test_compare_on_constructed_results_matches_examples_by_question(tmp_path, capsys):
    a = _eval_json(tmp_path / "a.json", [("q1", "yes"), ("q2", "no"), ("q3", "yes"), ("q4", "no"), ("gone", "yes")])
    b = _eval_json(tmp_path / "b.json", [("q4", "yes"), ("q3", "no"), ("q2", "yes"), ("q1", "yes"), ("new", "no")])
    assert main(["eval", "--compare", str(a), str(b), "--json", "--out", str(tmp_path / "c")]) == 0
    c = json.loads(capsys.readouterr().out)
    assert [i["question"] for i in c["fixed"]] == ["q4", "q2"] and [i["question"] for i in c["broken"]] == ["q3"]
    assert c["fixed"][0]["answer_a"] == "no" and c["fixed"][0]["answer_b"] == "yes"
    assert (c["shared"], c["only_in_a"], c["only_in_b"]) == (4, 1, 1)
    assert (c["exact_match_a"], c["exact_match_b"]) == (0.5, 0.75)
    assert c["p_value"] == pytest.approx(1.0)  # 2 vs 1 discordant: 2 * P(X <= 1 | n=3) = 2 * 4/8, capped at 1


def test_chat_with_a_run_answers(tiny_run, capsys):
    run, _ = tiny_run
    assert main(["chat", "--run", str(run), "-m", "How much is the City plan?", "--max-new-tokens", "16"]) == 0
    assert capsys.readouterr().out.strip()


def test_interactive_chat_keeps_history_and_resets(tiny_model_dir, monkeypatch, capsys):
    from buxiban.cli.chat_session import ChatSession

    opened = []
    original = ChatSession.open.__func__

    def remember(cls, **kwargs):
        session = original(cls, **kwargs)
        opened.append(session)
        return session

    monkeypatch.setattr(ChatSession, "open", classmethod(remember))
    lines = iter(["Is there a deposit?", "And hours?", "/reset", "Hi", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "--model", str(tiny_model_dir), "--system", "Be brief.", "--max-new-tokens", "4"]) == 0
    history = opened[0].history
    assert [m["content"] for m in history if m["role"] == "user"] == ["Hi"]  # /reset dropped the first two
    assert opened[0].messages()[0] == {"role": "system", "content": "Be brief."}
    assert "chatting with base model" in capsys.readouterr().out


def test_merged_adapter_answers_like_the_unmerged_one(tiny_run):
    from buxiban.eval.systems import BASE, FINE_TUNED, LocalWeights
    from buxiban.models.generate import generate_with_stats

    run, train = tiny_run
    prompts = [r["messages"][:-1] for r in RECORDS]
    local = LocalWeights.load(run)
    unmerged = generate_with_stats(local.model, local.tokenizer, prompts, 24).answers
    with local.use(BASE) as (model, tokenizer):
        base = generate_with_stats(model, tokenizer, prompts, 24).answers
    with local.use(FINE_TUNED) as (model, tokenizer):
        merged = generate_with_stats(model, tokenizer, prompts, 24)
    assert local._merged and merged.answers == unmerged and merged.answers != base
    templated = [local.tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    assert merged.prompt_tokens == [len(local.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in templated]
    with local.use(BASE) as (model, tokenizer):  # switching back unmerges: the base answers again
        assert generate_with_stats(model, tokenizer, prompts, 24).answers == base
    assert not local._merged


def test_generation_takes_as_many_rows_as_memory_allows_and_answers_the_same(tiny_run, monkeypatch):
    from buxiban.eval.systems import LocalWeights
    from buxiban.models import generate

    run, _ = tiny_run
    prompts = [r["messages"][:-1] for r in RECORDS]
    local = LocalWeights.load(run)
    model, tokenizer = local.model, local.tokenizer
    per_row = generate.bytes_per_row(model.config, 40, 24, 4)
    assert generate.bytes_per_row(model.config, 80, 24, 4) > per_row  # longer prompts, fewer rows
    monkeypatch.setattr(generate, "free_memory_bytes", lambda device: 10 * per_row / generate.MEMORY_SHARE)
    assert generate.rows_that_fit(model, 40, 24) == 10
    monkeypatch.setattr(generate, "free_memory_bytes", lambda device: 0)
    assert generate.rows_that_fit(model, 40, 24) == 1  # still answers, one at a time
    monkeypatch.setattr(generate, "free_memory_bytes", lambda device: 1 << 40)
    assert generate.rows_that_fit(model, 40, 24) == generate.MAX_ROWS
    one_by_one = generate.generate_with_stats(model, tokenizer, prompts, 24, batch_size=1)
    together = generate.generate_with_stats(model, tokenizer, prompts, 24)
    assert together.answers == one_by_one.answers and together.new_tokens == one_by_one.new_tokens
    sizes = []
    monkeypatch.setattr(model, "generate", lambda input_ids, **kw: sizes.append(len(input_ids)) or input_ids)
    monkeypatch.setattr(generate, "rows_that_fit", lambda *args: 4)
    generate.generate_with_stats(model, tokenizer, (prompts * 5)[:9], 24)
    assert sizes == [3, 3, 3]  # even batches: the last one does not take as many steps for fewer rows
