"""`buxiban migrate` against a fake hosted service in this process (a few routes of OpenAI's files and
fine-tuning jobs API on a free port): what a migration writes and records, and that every way the
source can fail or lie ends with a clear message and nothing written. No training here; the end to
end run with real servers is tests/test_migrate_serve.py."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from buxiban.cli import main
from buxiban.config import load_config
from buxiban.runs import file_sha256

from conftest import chat_record

KEY = "sk-hosted-secret-4242"
JOB = "ftjob-abc123"
FINE_TUNED = "ft:gpt-4o-mini-2024-07-18:acme::abc123"


def train_lines(n: int = 12) -> bytes:
    records = [chat_record(f"Question {i} about the City plan?", f"Answer {i}: NT$690 per month.") for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def job_object(**changes) -> dict:
    job = {
        "id": JOB,
        "object": "fine_tuning.job",
        "model": "gpt-4o-mini-2024-07-18",
        "status": "succeeded",
        "fine_tuned_model": FINE_TUNED,
        "training_file": "file-train1",
        "validation_file": "file-valid1",
        "user_provided_suffix": "acme",
        "seed": 7,
        "created_at": 1_760_000_000,
        "method": {
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 16, "learning_rate_multiplier": 2.0}},
        },
    }
    job.update(changes)
    return job


class FakeSource:
    """Routes: path -> (status, body bytes or JSON-able, headers). Records every request it got."""

    def __init__(self):
        self.routes: dict[str, tuple[int, object, dict]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                source.requests.append(("GET", self.path, self.headers.get("Authorization")))
                status, body, headers = source.routes.get(
                    self.path.split("?")[0], (404, {"error": {"message": "No such object"}}, {})
                )
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Length": str(len(raw)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def standard(self, job: dict | None = None, validation: bytes | None = None) -> FakeSource:
        job = job or job_object()
        self.routes[f"/v1/fine_tuning/jobs/{job['id']}"] = (200, job, {})
        self.routes["/v1/fine_tuning/jobs"] = (200, {"object": "list", "data": [job], "has_more": False}, {})
        self.file("file-train1", "acme-train.jsonl", train_lines())
        self.file("file-valid1", "acme-valid.jsonl", validation if validation is not None else train_lines(4))
        return self

    def file(self, file_id: str, name: str, content: bytes) -> None:
        meta = {"id": file_id, "object": "file", "bytes": len(content), "filename": name, "purpose": "fine-tune"}
        self.routes[f"/v1/files/{file_id}"] = (200, meta, {})
        self.routes[f"/v1/files/{file_id}/content"] = (200, content, {"Content-Type": "application/octet-stream"})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def source(monkeypatch):
    monkeypatch.setenv("HOSTED_KEY", KEY)
    fake = FakeSource()
    yield fake
    fake.close()


def migrate(source, tmp_path, tiny_model_dir, *extra: str) -> int:
    return main(
        [
            "migrate",
            "--base-url",
            source.url,
            "--api-key-env",
            "HOSTED_KEY",
            "--out",
            str(tmp_path / "migrations"),
            "--model",
            str(tiny_model_dir),
            *extra,
        ]
    )


def nothing_written(tmp_path) -> bool:
    return not (tmp_path / "migrations").exists() or not any((tmp_path / "migrations").iterdir())


# --- what a migration writes -----------------------------------------------------------------------


def test_a_job_is_brought_home_with_its_files_settings_and_record(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    code = migrate(source, tmp_path, tiny_model_dir, "--job", JOB, "--no-train", "--set", "train.threads=1")
    out, err = capsys.readouterr()
    assert code == 0, err
    folder = tmp_path / "migrations" / JOB
    assert sorted(p.name for p in (tmp_path / "migrations").iterdir()) == [JOB]  # no staging folder left
    record = json.loads((folder / "migration.json").read_text())

    assert record["source"]["job"]["id"] == JOB and record["source"]["base_url"] == source.url
    assert record["source"]["key_env"] == "HOSTED_KEY"
    training = record["files"]["training"]
    assert (training["id"], training["filename"], training["examples"]) == ("file-train1", "acme-train.jsonl", 12)
    assert training["sha256"] == file_sha256(folder / "data" / "train.jsonl")
    assert (folder / "data" / "train.jsonl").read_bytes() == train_lines()
    assert record["files"]["validation"]["id"] == "file-valid1"
    assert record["held_out"]["path"] == "data/validation.jsonl" and record["held_out"]["from"] == "validation_file"

    mapping = record["mapping"]
    assert mapping["n_epochs"] == {"source": 3, "local": 3, "reason": "the passes the hosted model was trained with"}
    assert mapping["batch_size"]["local"] == {"batch_size": 8, "grad_accum": 2}
    assert mapping["learning_rate_multiplier"]["local"] == {"learning_rate": 0.002}  # 1e-3 for LoRA under 1B × 2
    assert "does not publish" in mapping["learning_rate_multiplier"]["reason"]
    assert mapping["seed"]["local"] == 7 and mapping["suffix"]["local"] == "acme"

    config = load_config(folder / "config.yaml")
    assert (config.train.epochs, config.train.batch_size, config.train.grad_accum) == (3, 8, 2)
    assert config.train.learning_rate == pytest.approx(0.002) and config.train.seed == 7 and config.train.threads == 1
    assert config.data.train == str(folder / "data" / "train.jsonl")
    assert config.data.validation == str(folder / "data" / "validation.jsonl")
    assert config.output_dir == str(folder / "run") and config.method == "sft" and config.adapter == "lora"
    assert config.model == str(tiny_model_dir)

    assert f"model={FINE_TUNED},key_env=HOSTED_KEY,price=gpt-4o-mini" in record["next"]["eval"]
    assert f"--alias {FINE_TUNED}=acme" in record["next"]["serve"]
    assert "buxiban train" in out and "compare before the hosted model shuts down" in out
    assert {auth for _, _, auth in source.requests} == {f"Bearer {KEY}"}
    assert KEY not in out + err + (folder / "migration.json").read_text()


def test_without_a_validation_file_data_split_holds_out_a_test_set(source, tmp_path, tiny_model_dir, capsys):
    source.standard(job_object(validation_file=None))
    source.file("file-train1", "big.jsonl", train_lines(40))
    assert migrate(source, tmp_path, tiny_model_dir, "--job", JOB, "--no-train") == 0
    folder = tmp_path / "migrations" / JOB
    record = json.loads((folder / "migration.json").read_text())
    held = record["held_out"]
    assert held["from"] == "split" and held["path"] == "data/split/test.jsonl" and held["examples"] >= 1
    assert "optimistic" in held["note"]
    test = (folder / held["path"]).read_text().splitlines()
    train = (folder / "data/split/train.jsonl").read_text().splitlines()
    assert len(test) + len(train) == 40 and not set(test) & set(train)
    config = load_config(folder / "config.yaml")
    assert config.data.train == str(folder / "data/split/train.jsonl") and config.data.validation_fraction == 0
    assert "data/split/test.jsonl" in record["next"]["eval"]


def test_auto_hyperparameters_stay_auto_and_say_so(source, tmp_path, tiny_model_dir):
    hyper = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
    source.standard(job_object(method={"type": "supervised", "supervised": {"hyperparameters": hyper}}))
    assert migrate(source, tmp_path, tiny_model_dir, "--job", JOB, "--no-train") == 0
    folder = tmp_path / "migrations" / JOB
    mapping = json.loads((folder / "migration.json").read_text())["mapping"]
    assert mapping["n_epochs"]["local"] == "auto" and "did not say" in mapping["n_epochs"]["reason"]
    assert mapping["learning_rate_multiplier"]["local"] == {"learning_rate": 0.001}
    raw = yaml.safe_load((folder / "config.yaml").read_text())
    assert "epochs" not in raw["train"] and raw["train"]["learning_rate"] == 0.001


def test_jobs_are_listed_with_the_ones_that_cannot_migrate(source, tmp_path, tiny_model_dir, capsys):
    odd = job_object(id="ftjob-odd", method={"type": "reinforcement", "reinforcement": {}})
    source.routes["/v1/fine_tuning/jobs"] = (200, {"data": [job_object(), odd, "junk"], "has_more": False}, {})
    assert migrate(source, tmp_path, tiny_model_dir) == 0
    out = capsys.readouterr().out
    assert JOB in out and FINE_TUNED in out and "ftjob-odd" in out
    assert "reinforcement fine-tuning" in out and "not a job object" in out
    assert nothing_written(tmp_path)


# --- the source fails or lies: a clear message, and nothing written --------------------------------


def refused(source, tmp_path, tiny_model_dir, capsys, *extra: str) -> str:
    code = migrate(source, tmp_path, tiny_model_dir, "--job", JOB, "--no-train", *extra)
    err = capsys.readouterr().err
    assert code == 1, err
    assert nothing_written(tmp_path), list((tmp_path / "migrations").rglob("*"))
    assert KEY not in err
    return err


def test_a_malformed_training_file_is_refused_with_its_line(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    bad = train_lines(3) + b'{"messages": [{"role": "asistant", "content": "hi"}]}\n' + b"not json\n"
    source.file("file-train1", "acme-train.jsonl", bad)
    err = refused(source, tmp_path, tiny_model_dir, capsys)
    assert "served training_file file-train1 (acme-train.jsonl) malformed" in err
    assert "file-train1 (acme-train.jsonl):4" in err and "asistant" in err and ":5" in err


def test_a_job_whose_file_was_deleted_at_the_source_is_refused(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    del source.routes["/v1/files/file-valid1"], source.routes["/v1/files/file-valid1/content"]
    err = refused(source, tmp_path, tiny_model_dir, capsys)
    assert "validation_file file-valid1 was deleted at the source" in err and "No such object" in err


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_reported_without_the_key(source, tmp_path, tiny_model_dir, capsys, status):
    source.routes[f"/v1/fine_tuning/jobs/{JOB}"] = (
        status,
        {"error": {"message": f"Incorrect API key provided: {KEY}\x1b[31m"}},
        {},
    )
    err = refused(source, tmp_path, tiny_model_dir, capsys)
    assert f"refused the key (HTTP {status})" in err and "$HOSTED_KEY" in err
    assert "[key]" in err and "\x1b" not in err  # the echoed key and a terminal escape never reach the terminal


def test_a_rate_limited_source_is_asked_three_times_then_reported(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    source.routes["/v1/files/file-train1/content"] = (
        429,
        {"error": {"message": "Rate limit reached"}},
        {"Retry-After": "0"},
    )
    err = refused(source, tmp_path, tiny_model_dir, capsys)
    assert "limiting requests (HTTP 429)" in err and "Rate limit reached" in err and "try again later" in err
    assert sum(path == "/v1/files/file-train1/content" for _, path, _ in source.requests) == 3


def test_a_long_retry_after_is_reported_at_once(source, tmp_path, tiny_model_dir, capsys):
    source.routes[f"/v1/fine_tuning/jobs/{JOB}"] = (429, {"error": {"message": "slow down"}}, {"Retry-After": "3600"})
    err = refused(source, tmp_path, tiny_model_dir, capsys)
    assert "wait 3600 s" in err and len(source.requests) == 1


@pytest.mark.parametrize(
    "job, message",
    [
        (job_object(id="../../etc"), "id is '../../etc', not an id"),
        (job_object(training_file="file/../x"), "training_file is 'file/../x', not an id"),
        (job_object(seed="7"), "seed is '7'"),
        (
            job_object(method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1e9}}}),
            'n_epochs is 1000000000.0, not "auto" or a whole number from 1 to 50',
        ),
        (job_object(method={"type": "reinforcement"}), "reinforcement fine-tuning (graders)"),
        ([1, 2], "not a fine-tuning job object"),
    ],
)
def test_a_hostile_job_object_is_refused_naming_the_field(source, tmp_path, tiny_model_dir, capsys, job, message):
    source.standard()
    source.routes[f"/v1/fine_tuning/jobs/{JOB}"] = (200, job, {})
    assert message in refused(source, tmp_path, tiny_model_dir, capsys)


def test_answers_that_are_not_json_or_too_big_are_refused(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    source.routes[f"/v1/fine_tuning/jobs/{JOB}"] = (200, b'{"id": NaN}', {})
    assert "is not JSON" in refused(source, tmp_path, tiny_model_dir, capsys)
    source.routes[f"/v1/fine_tuning/jobs/{JOB}"] = (200, job_object(), {})
    source.file("file-train1", "huge.jsonl", train_lines(2000))
    assert "over the" in refused(source, tmp_path, tiny_model_dir, capsys, "--max-file-mb", "0.01")


def test_a_redirect_to_another_site_is_not_followed_with_the_key(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    source.routes["/v1/files/file-train1/content"] = (302, b"", {"Location": "http://localhost:9/steal"})
    err = refused(source, tmp_path, tiny_model_dir, capsys)
    assert "redirected to another site (localhost:9)" in err


def test_an_existing_migration_is_never_written_over(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    assert migrate(source, tmp_path, tiny_model_dir, "--job", JOB, "--no-train") == 0
    before = (tmp_path / "migrations" / JOB / "migration.json").read_text()
    capsys.readouterr()
    assert migrate(source, tmp_path, tiny_model_dir, "--job", JOB, "--no-train") == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "migrations" / JOB / "migration.json").read_text() == before


def test_a_killed_migrations_staging_folder_is_removed_by_the_next_one(source, tmp_path, tiny_model_dir, capsys):
    import socket
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)  # a process that has exited: what SIGKILL leaves behind
    out = tmp_path / "migrations"
    host = socket.gethostname()
    abandoned = out / f".migrating-{host}-{dead_pid}-x1.partial"
    running = out / f".migrating-{host}-{os.getpid()}-x2.partial"  # a live process: another migration at work
    other_host = out / f".migrating-elsewhere-{dead_pid}-x3.partial"
    for folder in (abandoned, running, other_host):
        (folder / "data").mkdir(parents=True)
    source.standard()
    assert migrate(source, tmp_path, tiny_model_dir, "--job", JOB, "--no-train") == 0
    assert not abandoned.exists()
    assert running.is_dir() and other_host.is_dir()
    assert f"removed {abandoned.name}" in capsys.readouterr().err


def test_openai_without_a_key_is_refused_before_any_request(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["migrate", "--out", str(tmp_path / "m")]) == 1
    assert "set OPENAI_API_KEY" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_a_bad_set_fails_before_anything_is_downloaded(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    err = refused(source, tmp_path, tiny_model_dir, capsys, "--set", "train.epoch=2")
    assert "train.epoch" in err and "did you mean 'train.epochs'" in err
    assert not any("/files/" in path for _, path, _ in source.requests)


# --- DPO jobs ----------------------------------------------------------------------------------------


def pair_lines(n: int) -> bytes:
    pairs = [
        {
            "input": {"messages": [{"role": "user", "content": f"Is there a deposit for plan {i}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"Yes: NT$3,000 for plan {i}."}],
            "non_preferred_output": [{"role": "assistant", "content": "No idea."}],
        }
        for i in range(n)
    ]
    return "".join(json.dumps(p) + "\n" for p in pairs).encode()


def dpo_job(**changes) -> dict:
    hyper = {"n_epochs": 2, "batch_size": 2, "learning_rate_multiplier": 1, "beta": 0.2}
    return job_object(method={"type": "dpo", "dpo": {"hyperparameters": hyper}}, **changes)


def test_a_dpo_job_keeps_its_beta_and_its_preferred_answers_are_the_references(source, tmp_path, tiny_model_dir):
    source.standard(dpo_job(model="gpt-4o-mini-2024-07-18"))
    source.file("file-train1", "pairs.jsonl", pair_lines(6))
    source.file("file-valid1", "pairs-valid.jsonl", pair_lines(2))
    assert migrate(source, tmp_path, tiny_model_dir, "--job", JOB, "--no-train") == 0
    folder = tmp_path / "migrations" / JOB
    record = json.loads((folder / "migration.json").read_text())
    assert record["files"]["training"]["kind"] == "preference" and record["mapping"]["beta"]["local"] == 0.2
    assert record["mapping"]["learning_rate_multiplier"]["local"] == {"learning_rate": 1e-5}  # DPO LoRA under 1B
    config = load_config(folder / "config.yaml")
    assert (config.method, config.dpo.beta, config.data.validation) == (
        "dpo",
        0.2,
        str(folder / "data/validation.jsonl"),
    )
    references = [json.loads(line)["messages"][-1] for line in (folder / "data/test.jsonl").read_text().splitlines()]
    assert references == [{"role": "assistant", "content": f"Yes: NT$3,000 for plan {i}."} for i in range(2)]


def test_a_dpo_job_on_a_hosted_fine_tune_needs_the_local_parent(source, tmp_path, tiny_model_dir, capsys):
    source.standard(dpo_job(model="ft:gpt-4o-mini-2024-07-18:acme::parent1"))
    err = refused(source, tmp_path, tiny_model_dir, capsys)
    assert "continues the hosted fine-tune ft:gpt-4o-mini-2024-07-18:acme::parent1" in err and "--dpo-from-run" in err


def test_a_file_of_the_wrong_kind_for_the_method_is_refused(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    source.file("file-train1", "pairs.jsonl", pair_lines(3))
    err = refused(source, tmp_path, tiny_model_dir, capsys)
    assert "is a supervised job but its training_file file-train1 (pairs.jsonl) holds preference data" in err


def test_a_connection_that_drops_mid_download_is_reported(source, tmp_path, tiny_model_dir, capsys):
    source.standard()
    # announces more bytes than it sends, then closes: the read fails part way
    source.routes["/v1/files/file-train1/content"] = (200, train_lines(2), {"Content-Length": "100000"})
    err = refused(source, tmp_path, tiny_model_dir, capsys)
    assert "the connection to the source broke while reading" in err
