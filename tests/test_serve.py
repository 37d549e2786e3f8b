"""`buxiban serve` end to end: a real server process on a free port, the tiny model, and the
official `openai` SDK, written the way OpenAI's own docs write it."""

from __future__ import annotations

import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from buxiban.config import load_config
from buxiban.train.sft import train_sft

from conftest import QUESTIONS, SYSTEM, Server, ask, chat_record, write_jsonl


def wait_for_job(client, job_id: str, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")


def train_adapter(model_dir: Path, data: Path, out: Path, kind: str = "lora") -> Path:
    config = load_config(
        None,
        [
            f"model={model_dir}",
            f"data.train={data}",
            f"output_dir={out}",
            f"adapter={kind}",
            "data.validation_fraction=0",
            "train.max_steps=30",
            "train.batch_size=4",
            "train.learning_rate=1e-2",
            "train.precision=fp32",
            "lora.dropout=0",
            "train.threads=1",
        ],
    )
    train_sft(config, progress=False, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def adapter_runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Two adapters trained on different answers to the same questions."""
    work = tmp_path_factory.mktemp("adapters")
    prices = write_jsonl(
        work / "prices.jsonl", [chat_record(q, "The City plan costs NT$690 per month.") for q in QUESTIONS]
    )
    hours = write_jsonl(
        work / "hours.jsonl", [chat_record(q, "Support is open 08:00 to 21:00 every day.") for q in QUESTIONS]
    )
    return {
        "prices": train_adapter(tiny_model_dir, prices, work / "prices-run"),
        "hours": train_adapter(tiny_model_dir, hours, work / "hours-run"),
    }


@pytest.fixture(scope="module")
def server(tiny_model_dir, adapter_runs, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    running = Server(
        tiny_model_dir,
        work / "home",
        "--adapter",
        f"prices={adapter_runs['prices']}",
        "--adapter",
        f"hours={adapter_runs['hours']}",
    )
    yield running
    running.stop()


@pytest.mark.integration
def test_upload_train_chat_and_stream_through_the_sdk(server, tiny_chat_file):
    client = server.client()
    file = client.files.create(file=open(tiny_chat_file, "rb"), purpose="fine-tune")
    assert file.purpose == "fine-tune" and file.bytes == tiny_chat_file.stat().st_size
    assert client.files.content(file.id).content == tiny_chat_file.read_bytes()
    job = client.fine_tuning.jobs.create(
        training_file=file.id,
        validation_file=file.id,
        model="tiny-model0",
        suffix="yunshan",
        hyperparameters={"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 5},
    )
    assert job.status == "validating_files"
    job = wait_for_job(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny-model0:yunshan:{job.id}"
    assert job.hyperparameters.n_epochs == 3 and job.hyperparameters.batch_size == 2
    assert job.trained_tokens > 0 and job.finished_at >= job.created_at
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    steps = [e.data["step"] for e in events if e.type == "metrics" and "train_loss" in e.data]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]  # 4 examples at batch 2 for 3 epochs, each step logged once
    validations = [e.data for e in events if e.type == "metrics" and "valid_loss" in e.data]
    assert sorted(v["step"] for v in validations) == [2, 4, 6]  # the validation file, once an epoch
    assert events[0].message == "The job has successfully completed"  # newest first
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert checkpoints and all(c.step_number in (2, 4) for c in checkpoints)
    assert job.fine_tuned_model in [m.id for m in client.models.list()]
    assert job.id in [j.id for j in client.fine_tuning.jobs.list()]

    completion = client.chat.completions.create(
        model=job.fine_tuned_model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "How much is the City plan?"}],
        temperature=0,
        max_tokens=12,
    )
    whole = completion.choices[0].message.content
    assert completion.usage.completion_tokens >= 1 and completion.choices[0].finish_reason in ("stop", "length")
    stream = client.chat.completions.create(
        model=job.fine_tuned_model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "How much is the City plan?"}],
        temperature=0,
        max_tokens=12,
        stream=True,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole  # streamed = whole, greedy
    assert chunks[-1].choices[0].finish_reason == completion.choices[0].finish_reason


@pytest.mark.integration
def test_dpo_job_continues_a_fine_tuned_model(server, tmp_path):
    client = server.client()
    pairs = [
        {
            "input": {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": "The City plan costs NT$690 per month."}],
            "non_preferred_output": [{"role": "assistant", "content": "I do not know."}],
        }
        for q in QUESTIONS
    ]
    file = client.files.create(file=open(write_jsonl(tmp_path / "pairs.jsonl", pairs), "rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=file.id,
        model="prices",
        suffix="dpo",
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1, "batch_size": 2}}},
    )
    job = wait_for_job(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.2
    config = (server.home / "jobs" / job.id / "config.yaml").read_text()
    assert "method: dpo" in config and "beta: 0.2" in config and "prices-run" in config  # continued that adapter
    assert ask(client, job.fine_tuned_model, QUESTIONS[0])


@pytest.mark.integration
def test_two_adapters_answer_differently_in_interleaved_requests(server):
    client = server.client()
    alone = {name: ask(client, name, QUESTIONS[1]) for name in ("prices", "hours", "tiny-model0")}
    assert len(set(alone.values())) == 3, alone  # each adapter, and the base, says its own thing
    assert "690" in alone["prices"] or "City" in alone["prices"]  # what that adapter was trained to say
    assert "08:00" in alone["hours"] or "Support" in alone["hours"]
    order = ["prices", "hours"] * 2
    with ThreadPoolExecutor(2) as pool:  # two in flight at once, alternating adapters (the queue holds 2)
        answers = list(pool.map(lambda name: ask(client, name, QUESTIONS[1]), order))
    assert answers == [alone[name] for name in order]


def test_a_batch_mixing_adapters_gives_each_row_its_own(adapter_runs, tiny_model_dir, tmp_path):
    """The model thread's own batching, driven by hand: queued requests for two adapters and the
    base form one batch, and each row answers exactly as it does alone; with a DoRA adapter among
    them (PEFT cannot mix DoRA rows) the batch runs adapter by adapter, with the same answers."""
    import collections

    from buxiban.adapters.registry import Registry
    from buxiban.data.tokenize import encode_prompt
    from buxiban.serve.api.generation import GenerationRequest, Sampling
    from buxiban.serve.api.pool import ModelPool

    registry = Registry(tmp_path)
    for name, run in adapter_runs.items():
        registry.register(name, run)
    deposit = write_jsonl(tmp_path / "deposit.jsonl", [chat_record(q, "The deposit is NT$3,000.") for q in QUESTIONS])
    registry.register("dora", train_adapter(tiny_model_dir, deposit, tmp_path / "dora-run", kind="dora"))
    pool = ModelPool(str(tiny_model_dir), registry, queue_size=8)
    pool.close()
    pool.thread.join(timeout=10)  # the test drives the batching itself
    prompt = encode_prompt(
        pool.tokenizer, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[1]}]
    )

    def request(name):
        events: list[tuple] = []
        return GenerationRequest(name, prompt, Sampling(16, temperature=0), events.append), events

    def text(events):
        return "".join(event[2] for event in events if event[0] == "delta")

    alone = {}
    for name in ("prices", "hours", "dora", None):
        single, events = request(name)
        pool._generate([single])
        alone[name] = text(events)
    for names in (("prices", None, "hours"), ("hours", "dora", None, "prices")):
        together = [request(name) for name in names]
        for single, _ in together:
            pool.queue.put_nowait(single)
        batch = pool._next_batch(collections.deque())
        assert batch == [single for single, _ in together]  # one batch, in arrival order
        pool._generate(batch)
        assert [text(events) for _, events in together] == [alone[name] for name in names]
    assert len(set(alone.values())) == 4


@pytest.mark.integration
def test_completions_sampling_stop_and_n(server):
    client = server.client()
    sampled = [
        client.chat.completions.create(
            model="prices", messages=[{"role": "user", "content": "hi"}], temperature=1.0, seed=7, max_tokens=10, n=2
        )
        for _ in range(2)
    ]
    assert len(sampled[0].choices) == 2
    assert [c.message.content for c in sampled[0].choices] == [c.message.content for c in sampled[1].choices]  # seeded
    text = client.completions.create(model="tiny-model0", prompt="The City plan", max_tokens=8, temperature=0)
    assert text.object == "text_completion" and text.usage.prompt_tokens > 0
    full = ask(client, "prices", QUESTIONS[0])
    assert len(full) > 4
    stop = full[2:4]
    cut = client.chat.completions.create(
        model="prices",
        temperature=0,
        max_tokens=16,
        stop=[stop],
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]}],
    )
    assert cut.choices[0].message.content == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"


@pytest.mark.integration
def test_cancel_pages_and_method_checks(server, tiny_chat_file):
    from openai import BadRequestError

    client = server.client()
    file = client.files.create(file=open(tiny_chat_file, "rb"), purpose="fine-tune")
    with pytest.raises(BadRequestError) as caught:  # DPO needs preference pairs, and says so
        client.fine_tuning.jobs.create(
            training_file=file.id,
            model="tiny-model0",
            method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}},
        )
    assert "preference pairs" in caught.value.body["message"] and caught.value.body["param"] == "training_file"
    with pytest.raises(BadRequestError):
        client.fine_tuning.jobs.create(training_file=file.id, model="gpt-4o-mini")

    job = client.fine_tuning.jobs.create(
        training_file=file.id, model="tiny-model0", hyperparameters={"n_epochs": 25, "batch_size": 1}
    )
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    time.sleep(1.5)  # the worker must not resurrect it
    after = client.fine_tuning.jobs.retrieve(job.id)
    assert after.status == "cancelled" and after.fine_tuned_model is None
    assert not training_processes(server.home / "jobs" / job.id / "config.yaml")
    with pytest.raises(BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)

    for _ in range(2):
        client.files.create(file=open(tiny_chat_file, "rb"), purpose="fine-tune")
    everything = [f.id for f in client.files.list()]
    first_page = client.files.list(limit=2)
    assert len(first_page.data) == 2 and first_page.has_more
    assert [f.id for f in first_page] == everything  # the SDK follows `after` through every page
    deleted = client.files.delete(file.id)
    assert deleted.deleted and file.id not in [f.id for f in client.files.list()]


def training_processes(config: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(config).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture()
def server_to_kill(tiny_model_dir, tmp_path):
    """A server of the test's own: the shared one stays up for the other tests, whatever the order."""
    running = Server(tiny_model_dir, tmp_path / "home")
    yield running
    running.stop()


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PR_SET_PDEATHSIG")
def test_killing_the_server_mid_job_loses_nothing(server_to_kill, tiny_model_dir, tmp_path):
    """Kills its own server (and starts a successor on the same home)."""
    server = server_to_kill
    home, client = server.home, server.client()
    small = client.files.create(
        file=open(write_jsonl(tmp_path / "small.jsonl", [chat_record(q, "Yes.") for q in QUESTIONS]), "rb"),
        purpose="fine-tune",
    )
    done = wait_for_job(
        client,
        client.fine_tuning.jobs.create(  # a finished job to lose
            training_file=small.id, model="tiny-model0", hyperparameters={"n_epochs": 1, "batch_size": 4}
        ).id,
    )
    uploads = {f.id for f in client.files.list()}
    records = [chat_record(f"{q} ({i})", f"Answer number {i}.") for i in range(10) for q in QUESTIONS]
    big = client.files.create(file=open(write_jsonl(tmp_path / "big.jsonl", records), "rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=big.id, model="tiny-model0", hyperparameters={"n_epochs": 4, "batch_size": 2}
    )  # 80 steps, 20 an epoch
    deadline = time.time() + 90
    while not list(client.fine_tuning.jobs.checkpoints.list(job.id)):
        assert time.time() < deadline and client.fine_tuning.jobs.retrieve(job.id).status in (
            "validating_files",
            "queued",
            "running",
        )
        time.sleep(0.2)
    config = home / "jobs" / job.id / "config.yaml"
    assert training_processes(config)
    server.stop(signal.SIGKILL)
    deadline = time.time() + 10
    while training_processes(config):  # the child dies with the server (PR_SET_PDEATHSIG)
        assert time.time() < deadline, "training outlived the killed server"
        time.sleep(0.1)
    assert json.loads((home / "jobs" / job.id / "run" / "buxiban-run.json").read_text())["status"] == "running"

    second = Server(tiny_model_dir, home)
    try:
        client = second.client()
        assert uploads | {big.id} <= {f.id for f in client.files.list()}  # no upload lost
        assert client.fine_tuning.jobs.retrieve(done.id).fine_tuned_model == done.fine_tuned_model  # nor a finished job
        finished = wait_for_job(client, job.id)
        assert finished.status == "succeeded", finished.error
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert any("resume" in m for m in messages) and "Resuming fine-tuning from the newest checkpoint" in messages
        assert "resuming from" in (home / "jobs" / job.id / "train.log").read_text()
        steps = [
            json.loads(line)["step"]
            for line in (home / "jobs" / job.id / "run" / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == list(range(1, 81))  # resumed where the checkpoint left off, no step twice or missing
        assert ask(client, finished.fine_tuned_model, "hi") is not None
    finally:
        second.stop()
