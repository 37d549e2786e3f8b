"""The server's pieces without a server: "auto" hyperparameters, stop strings, bind rules, names,
and the sandbox the chat template renders in."""

from __future__ import annotations

from pathlib import Path

import pytest

from buxiban.cli import main
from buxiban.errors import ServeError
from buxiban.serve.api.generation import BatchSink, GenerationRequest, RowSink, Sampling
from buxiban.serve.api.parsing import ContextTooLong, sampling
from buxiban.serve.safety import check_bind, is_loopback
from buxiban.serve.tuning import hyper
from buxiban.serve.tuning.database import NotFound, Store, check_file_id, check_job_id


def test_a_job_picks_what_buxiban_train_picks():
    from buxiban.train.auto import choose

    method = hyper.parse_method(None, {"n_epochs": "auto"})
    for examples in (30, 320, 5000):
        chosen = choose("sft", "lora", 135_000_000, examples)
        concrete = hyper.resolve_auto(method, examples, 135_000_000)
        assert (concrete["n_epochs"], concrete["batch_size"]) == (chosen.epochs.value, chosen.batch_size.value)


def test_auto_batch_and_learning_rate_resolve_to_numbers():
    method = hyper.parse_method(None, {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 2})
    concrete = hyper.resolve_auto(method, 10_000, 135_000_000)
    assert concrete == {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 2.0}
    assert hyper.resolve_auto(method, 3, 135_000_000)["batch_size"] == 1
    assert hyper.total_steps(10, {"n_epochs": 3, "batch_size": 4}) == 9
    dpo = hyper.parse_method({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3}}}, None)
    assert hyper.resolve_auto(dpo, 100, 135_000_000)["beta"] == 0.3
    small = [hyper.resolve_auto(method, n, 135_000_000)["batch_size"] for n in (50, 320)]
    assert small == [3, 8]
    overrides = hyper.run_overrides(
        {"method": dpo, "seed": 1},
        hyper.resolve_auto(dpo, 100, 135_000_000),
        "embedded",
        135_000_000,
        Path("/j"),
        None,
        ["train.threads=1"],
    )
    assert "train.learning_rate=1e-05" in overrides and "method=dpo" in overrides and overrides[-1] == "train.threads=1"
    sft = hyper.parse_method(None, {"learning_rate_multiplier": 0.5})
    assert "train.learning_rate=0.0005" in hyper.run_overrides(
        {"method": sft, "seed": 1},
        hyper.resolve_auto(sft, 100, 135_000_000),
        "embedded",
        135_000_000,
        Path("/j"),
        None,
        [],
    )
    assert "train.learning_rate=0.0001" in hyper.run_overrides(
        {"method": sft, "seed": 1},
        hyper.resolve_auto(sft, 100, 7_000_000_000),
        "big",
        7_000_000_000,
        Path("/j"),
        None,
        [],
    )


@pytest.mark.parametrize(
    "method, hyperparameters, param",
    [
        ({"type": "reinforcement"}, None, "method.type"),
        (None, {"n_epochs": 2.5}, "method.supervised.hyperparameters.n_epochs"),
        (None, {"batch_size": 0}, "method.supervised.hyperparameters.batch_size"),
        (None, {"learning_rate": 0.1}, "method.supervised.hyperparameters.learning_rate"),
        (None, {"learning_rate_multiplier": 10_000}, "method.supervised.hyperparameters.learning_rate_multiplier"),
    ],
)
def test_bad_hyperparameters_name_the_field(method, hyperparameters, param):
    with pytest.raises(ServeError) as caught:
        hyper.parse_method(method, hyperparameters)
    assert caught.value.param == param


def test_fine_tuned_names_follow_openai_and_fit_the_registry():
    assert hyper.fine_tuned_name("tiny", "mine", "ftjob-abc") == "ft:tiny:mine:ftjob-abc"
    assert hyper.fine_tuned_name("tiny", None, "ftjob-abc") == "ft:tiny::ftjob-abc"
    assert len(hyper.fine_tuned_name("x" * 200, "s" * 64, "ftjob-" + "a" * 24)) == 128
    with pytest.raises(ServeError):
        hyper.check_suffix("../up")


class CharTokenizer:
    """One token per character (id 0 is end-of-turn): enough to drive the sinks as generate would."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i)


def run_rows(texts: list[str], stops: tuple[str, ...] = (), max_tokens: int = 100):
    """Feed texts as rows of one batch, step by step, the way generate does; returns each row's
    emitted text, how it ended, and how many steps generate ran."""
    import torch

    events = [[] for _ in texts]
    requests = [
        GenerationRequest(None, [1], Sampling(max_tokens, stop=stops), events[i].append) for i in range(len(texts))
    ]
    rows = [RowSink(CharTokenizer(), request, 0, [0]) for request in requests]
    sink = BatchSink(rows)
    sink.put(torch.tensor([[1, 2, 3]] * len(texts)))  # the prompt comes first and is not output
    steps = 0
    longest = max(len(t) for t in texts)
    while steps < longest and not sink(torch.zeros((len(texts), 1)), None).all():
        sink.put(torch.tensor([ord(t[steps]) if steps < len(t) else 0 for t in texts]))
        steps += 1
    for row in rows:
        row.finish()
    text = ["".join(e[2] for e in row_events if e[0] == "delta") for row_events in events]
    finish = [next(e for e in row_events if e[0] == "finish") for row_events in events]
    return text, [f[2] for f in finish], [f[3] for f in finish], steps


def test_stop_strings_cut_the_text_and_end_the_row():
    text, reasons, _, steps = run_rows(["Hello world. Goodbye"], ("world",))
    assert text == ["Hello "] and reasons == ["stop"] and steps == len("Hello world")
    text, reasons, _, _ = run_rows(["a stop b"], ("xyz",))
    assert text == ["a stop b"] and reasons == ["length"]
    # a stop string's prefix is held back until it cannot complete, then sent: nothing lost, nothing leaked
    text, _, _, _ = run_rows(["say wor"], ("world",))
    assert text == ["say wor"]


def test_rows_of_a_batch_end_on_their_own():
    text, reasons, tokens, steps = run_rows(
        ["hi\0", "a much longer answer", "a here", "cut here"], stops=("here",), max_tokens=6
    )
    assert text == ["hi", "a much", "a ", "cut he"]  # the last ran out of tokens before its stop string completed
    assert reasons == ["stop", "length", "stop", "length"]
    assert tokens == [3, 6, 6, 6]  # the end-of-turn token counts; so do a stop string's tokens
    assert steps == 6  # generate stops once every row is done


def test_sampling_checks_the_context_with_both_numbers():
    with pytest.raises(ContextTooLong) as caught:
        sampling({"max_tokens": 100}, prompt_tokens=450, context=512)
    assert "512" in str(caught.value) and "550 tokens (450 in the messages, 100 in the completion)" in str(caught.value)
    assert sampling({}, prompt_tokens=450, context=512).max_tokens == 62
    assert sampling({"stop": "x", "n": 2, "temperature": 0}, 10, 512).stop == ("x",)
    for bad in ({"temperature": 3}, {"top_p": 0}, {"n": 9}, {"stop": ["a"] * 5}, {"max_tokens": 0}, {"seed": "1"}):
        with pytest.raises(ServeError):
            sampling(bad, 10, 512)


def test_public_bind_needs_a_key():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "key")
    with pytest.raises(ServeError, match="without an API key"):
        check_bind("0.0.0.0", None)


def test_cli_refuses_a_public_bind_without_a_key_before_loading(monkeypatch, capsys):
    monkeypatch.delenv("BUXIBAN_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--model", "/nonexistent"]) == 1
    assert "without an API key" in capsys.readouterr().err


def test_ids_are_validated_before_any_path_is_built(tmp_path):
    store = Store(tmp_path)
    for bad in ("../serve.db", "file-../../x", "file-" + "A" * 24, "", None, "file-" + "a" * 25):
        with pytest.raises(NotFound):
            check_file_id(bad)
        with pytest.raises(NotFound):
            store.file_path(bad)
    with pytest.raises(NotFound):
        check_job_id("ftjob-../../etc")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ServeError, match="already using"):  # one server per home
        Store(tmp_path)
    store.close()
    Store(tmp_path).close()


def test_chat_templates_render_in_a_sandbox(tiny_model_dir):
    """A template that reaches for Python internals fails instead of running."""
    from jinja2.exceptions import SecurityError

    from buxiban.data.tokenize import encode_prompt
    from buxiban.errors import DataError
    from buxiban.models.load import load_tokenizer, resolve

    tokenizer = load_tokenizer(resolve(str(tiny_model_dir)))
    tokenizer.chat_template = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(DataError) as refused:  # reported like any template failure, the sandbox's refusal inside
        encode_prompt(tokenizer, [{"role": "user", "content": "hi"}])
    assert isinstance(refused.value.__cause__, SecurityError)


def test_runs_that_cannot_share_the_base_are_refused_with_the_way_to_serve_them(tmp_path):
    from types import SimpleNamespace

    from buxiban.adapters.registry import AdapterEntry
    from buxiban.runs import Manifest
    from buxiban.serve.api.pool import ModelPool

    pool = SimpleNamespace(source=SimpleNamespace(fingerprint="sha256:base", name="tiny"))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"")

    def problem(**manifest):
        manifest = {
            "status": "complete",
            "weights": "adapter",
            "adapter": "lora",
            "base_model": {"fingerprint": "sha256:base", "name": "tiny"},
            **manifest,
        }
        return ModelPool.unservable(pool, AdapterEntry("x", tmp_path, 0.0, Manifest.from_dict(manifest)))

    assert problem() is None
    assert f"buxiban serve --model {tmp_path / 'model'}" in problem(weights="model", adapter="full")
    assert "merge it first" in problem(weights="trained.safetensors", adapter="freeze")
    assert "not on this server's base model" in problem(base_model={"fingerprint": "sha256:other", "name": "big"})
    assert "unfinished" in problem(status="running")
    (tmp_path / "adapter" / "adapter_model.safetensors").unlink()
    (tmp_path / "adapter" / "adapter_model.bin").write_bytes(b"")
    assert "no adapter_model.safetensors" in problem()  # never a pickle


def test_progress_becomes_events_once_with_an_estimated_finish(tmp_path):
    import json

    from buxiban.serve.tuning.job_worker import JobWorker

    store = Store(tmp_path / "home")
    job = store.add_job(
        {
            "id": "ftjob-" + "a" * 24,
            "model": "tiny",
            "training_file": "file-" + "b" * 24,
            "seed": 1,
            "hyperparameters": {},
            "method": {"type": "supervised", "hyperparameters": {}},
        }
    )
    job = store.update_job(job["id"], total_steps=10)
    worker = JobWorker(store, None, "tiny", "tiny", {"tiny"}, 1000)
    metrics = tmp_path / "metrics.jsonl"
    lines = [
        {"step": 1, "loss": 2.0, "time": 1000.0, "tokens": 10},
        {"step": 2, "loss": 1.5, "time": 1002.0, "tokens": 20},
    ]
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    seen = worker.record_progress(job, tmp_path, {"train": 0, "val": 0})
    # a validation line for a step whose training line was already read still becomes an event
    metrics.write_text(metrics.read_text() + json.dumps({"step": 2, "val_loss": 1.7}) + "\n")
    seen = worker.record_progress(job, tmp_path, seen)
    assert worker.record_progress(job, tmp_path, seen) == {"train": 2, "val": 2}  # nothing new, nothing twice
    events = store.list_events(job["id"])
    assert [e["data"].get("step") for e in events if e["type"] == "metrics"] == [2, 2, 1]  # newest first
    assert events[0]["data"]["valid_loss"] == 1.7
    saved = store.get_job(job["id"])
    assert saved["last_step"] == 2 and saved["trained_tokens"] == 20
    assert saved["estimated_finish"] == 1002 + 2 * 8  # 2 s a step, 8 steps to go
    store.close()
