"""Leaving hosted fine-tuning, end to end and offline: a second `buxiban serve` stands in for the hosted
service (it implements the same files and fine-tuning jobs API). A job and its files are created and
trained there through the official SDK; `buxiban migrate --base-url …` brings it home and trains it
here; a local `buxiban serve` answers under the hosted model's old name (`--alias`); and `buxiban
eval` compares the hosted and the local model on the job's validation file, with costs per 1,000
requests. Then the same source refuses a wrong key, serves a corrupted file and loses a file, and
each ends with a clear message and nothing written."""

from __future__ import annotations

import json
import shlex
import time

import pytest

from buxiban.cli import main
from buxiban.runs import read_manifest

from conftest import KEY, SYSTEM, Server, chat_record, write_jsonl

pytestmark = pytest.mark.integration

ANSWERS = {
    "How much is the City plan?": "The City plan costs NT$690 per month.",
    "Is there a deposit?": "The deposit is NT$3,000.",
    "When is support open?": "Support is open 08:00 to 21:00 every day.",
    "The brakes failed": '{"team": "repairs", "priority": "urgent"}',
}


def wait_for_job(client, job_id: str, timeout: float = 180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")


@pytest.fixture(scope="module")
def hosted(tiny_model_dir, tmp_path_factory):
    """The stand-in for the hosted service, with one finished supervised job on it."""
    work = tmp_path_factory.mktemp("hosted")
    server = Server(tiny_model_dir, work / "home")
    client = server.client()
    records = [chat_record(q, a) for q, a in ANSWERS.items()]
    train = write_jsonl(work / "acme-train.jsonl", records * 2)
    valid = write_jsonl(work / "acme-valid.jsonl", records)
    with train.open("rb") as handle:
        training = client.files.create(file=handle, purpose="fine-tune")
    with valid.open("rb") as handle:
        validation = client.files.create(file=handle, purpose="fine-tune")
    base = next(m.id for m in client.models.list().data if m.model_extra["buxiban"]["kind"] == "base")
    job = client.fine_tuning.jobs.create(
        model=base,
        training_file=training.id,
        validation_file=validation.id,
        suffix="acme",
        seed=3,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 10}},
        },
    )
    job = wait_for_job(client, job.id)
    assert job.status == "succeeded", server.log.read_text()[-3000:]
    yield server, job
    server.stop()


@pytest.fixture(scope="module")
def migrated(hosted, tiny_model_dir, tmp_path_factory):
    server, job = hosted
    out = tmp_path_factory.mktemp("migrations")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_KEY", KEY)
        code = main(
            [
                "migrate",
                "--base-url",
                server.url + "/v1",
                "--api-key-env",
                "SOURCE_KEY",
                "--job",
                job.id,
                "--model",
                str(tiny_model_dir),
                "--out",
                str(out),
                "--set",
                "train.threads=1",
                "--set",
                "train.precision=fp32",
                "--set",
                "lora.dropout=0",
                "--quiet",
            ]
        )
    assert code == 0
    return out / job.id


@pytest.fixture(scope="module")
def local(migrated, hosted, tiny_model_dir, tmp_path_factory):
    """The local server, answering the hosted model's name with the migrated run."""
    _, job = hosted
    server = Server(
        tiny_model_dir,
        tmp_path_factory.mktemp("local") / "home",
        "--adapter",
        f"acme={migrated / 'run'}",
        "--alias",
        f"{job.fine_tuned_model}=acme",
    )
    yield server
    server.stop()


def test_the_migrated_job_trained_here_and_its_run_names_the_source_job(hosted, migrated):
    server, job = hosted
    record = json.loads((migrated / "migration.json").read_text())
    assert record["source"]["job"]["id"] == job.id
    assert record["source"]["job"]["fine_tuned_model"] == job.fine_tuned_model
    assert record["files"]["training"]["id"] == job.training_file
    assert record["files"]["validation"]["id"] == job.validation_file
    assert record["files"]["training"]["examples"] == 8
    # the local rate is the same multiplier times the same base rate the source server used
    assert record["mapping"]["learning_rate_multiplier"]["local"] == {"learning_rate": 0.01}

    run = migrated / "run"
    manifest = read_manifest(run)
    assert manifest.complete and manifest.steps == 4  # 2 epochs of 8 examples in batches of 4
    assert manifest.extra["migrated_from"]["job"] == job.id
    assert manifest.extra["migrated_from"]["base_url"] == server.url + "/v1"
    assert json.loads((run / "migration.json").read_text()) == record
    assert manifest.hyperparameters["learning_rate"]["value"] == pytest.approx(0.01)


def test_the_old_model_name_keeps_working_on_the_local_server(hosted, local):
    _, job = hosted
    client = local.client()
    listed = {m.id: m.model_extra["buxiban"] for m in client.models.list().data}
    assert listed[job.fine_tuned_model] == {"kind": "alias", "target": "acme"}

    def ask(model: str) -> str:
        reply = client.chat.completions.create(
            model=model,
            temperature=0,
            max_tokens=12,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Is there a deposit?"}],
        )
        return reply.choices[0].message.content

    assert ask(job.fine_tuned_model) == ask("acme")


def test_eval_compares_the_hosted_and_the_local_model_with_costs(
    hosted, migrated, local, tmp_path, capsys, monkeypatch
):
    server, job = hosted
    monkeypatch.setenv("SOURCE_KEY", KEY)
    monkeypatch.setenv("LOCAL_KEY", KEY)
    record = json.loads((migrated / "migration.json").read_text())
    # the command migrate printed; a real gpt-4o-mini job's has price=gpt-4o-mini in it already
    printed = shlex.split(record["next"]["eval"])
    assert printed[:2] == ["buxiban", "eval"] and printed[4] == str(migrated / "data" / "validation.jsonl")
    hosted_endpoint = printed.index("--endpoint") + 1
    assert printed[hosted_endpoint] == f"hosted={server.url}/v1,model={job.fine_tuned_model},key_env=SOURCE_KEY"
    printed[hosted_endpoint] += ",price=gpt-4o-mini"
    code = main(
        printed[1:]
        + ["--shots", "0", "--no-forgetting", "--latency-samples", "0", "--resamples", "200"]
        + ["--endpoint", f"local={local.url}/v1,model={job.fine_tuned_model},key_env=LOCAL_KEY,price=hourly"]
        + ["--price-per-hour", "0.5", "--out", str(tmp_path / "eval")]
    )
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert [s["name"] for s in result["systems"]] == ["base", "fine-tuned", "hosted", "local"]
    assert {row["reference"] for row in result["examples"]} == set(ANSWERS.values())
    assert all(isinstance(row[name]["answer"], str) for row in result["examples"] for name in ("hosted", "local"))
    against = {s["b"]: s for s in result["significance"]}
    assert against["hosted"]["a"] == "fine-tuned" and 0 <= against["hosted"]["p_value"] <= 1
    assert {"low", "high"} <= set(result["intervals"]["hosted"]["exact_match"])

    hosted_cost = result["costs"]["hosted"]["per_1000_requests"]
    measured = result["costs"]["hosted"]
    assert hosted_cost["price_model"] == "gpt-4o-mini" and measured["prompt_tokens_per_request"] > 0
    assert hosted_cost["usd"] == pytest.approx(
        1000 * (measured["prompt_tokens_per_request"] * 0.15 + measured["new_tokens_per_request"] * 0.60) / 1e6,
        abs=1e-6,
    )
    assert hosted_cost["availability"]["shutdown"] == "2027-01-14"
    local_cost = result["costs"]["fine-tuned"]["per_1000_requests"]
    assert local_cost["usd"] == pytest.approx(
        1000 * result["costs"]["fine-tuned"]["seconds_per_request_batched"] * 0.5 / 3600, abs=1e-6
    )
    assert result["costs"]["local"]["per_1000_requests"]["basis"] == "measured time"
    assert "cost per 1,000 requests" in out and "at gpt-4o-mini prices" in out and "2027-01-14" in out
    for report in ("eval.md", "eval.html"):  # the written reports carry the same lines as the terminal
        text = (tmp_path / "eval" / report).read_text()
        assert "at gpt-4o-mini prices" in text and "/hour for" in text and "2027-01-14" in text


def test_the_job_can_be_created_on_a_running_buxiban_serve_instead(hosted, local, tmp_path, monkeypatch, capsys):
    server, job = hosted
    monkeypatch.setenv("SOURCE_KEY", KEY)
    monkeypatch.setenv("LOCAL_KEY", KEY)
    code = main(
        [
            "migrate",
            "--base-url",
            server.url + "/v1",
            "--api-key-env",
            "SOURCE_KEY",
            "--job",
            job.id,
            "--out",
            str(tmp_path / "m"),
            "--serve-url",
            local.url + "/v1",
            "--serve-key-env",
            "LOCAL_KEY",
        ]
    )
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "m" / job.id / "migration.json").read_text())
    created = wait_for_job(local.client(), record["local_job"]["id"])
    assert created.status == "succeeded", local.log.read_text()[-3000:]
    assert created.metadata["migrated_from"] == job.id
    assert created.hyperparameters.n_epochs == 2 and created.hyperparameters.batch_size == 4
    assert created.fine_tuned_model.endswith(f":acme:{created.id}")


def refused(server, job, tmp_path, capsys, key: str = KEY) -> str:
    out = tmp_path / "refused"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_KEY", key)
        code = main(
            [
                "migrate",
                "--base-url",
                server.url + "/v1",
                "--api-key-env",
                "SOURCE_KEY",
                "--job",
                job.id,
                "--out",
                str(out),
                "--no-train",
            ]
        )
    err = capsys.readouterr().err
    assert code == 1, err
    assert not out.exists() or not any(out.iterdir())
    return err


def test_a_wrong_key_is_refused_by_the_source(hosted, tmp_path, capsys):
    server, job = hosted
    err = refused(server, job, tmp_path, capsys, key="sk-wrong")
    assert "the source refused the key (HTTP 401)" in err and "$SOURCE_KEY" in err and "sk-wrong" not in err


def test_a_file_the_source_serves_corrupted_is_refused(hosted, tmp_path, capsys):
    server, job = hosted
    stored = server.home / "files" / f"{job.validation_file}.jsonl"
    original = stored.read_bytes()
    stored.write_bytes(original + b'{"messages": [{"role": "user", "content": "cut off"\n')
    try:
        err = refused(server, job, tmp_path, capsys)
    finally:
        stored.write_bytes(original)
    assert f"served validation_file {job.validation_file} (acme-valid.jsonl) malformed" in err
    assert f"{job.validation_file} (acme-valid.jsonl):5" in err


def test_a_job_whose_file_was_deleted_at_the_source_is_refused(hosted, tmp_path, capsys):
    server, job = hosted  # the last test of the module: the deletion cannot be undone
    server.client().files.delete(job.training_file)
    err = refused(server, job, tmp_path, capsys)
    assert f"training_file {job.training_file} was deleted at the source" in err
