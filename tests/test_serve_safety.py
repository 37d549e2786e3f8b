"""`buxiban serve` refusing what it must: no key, traversal names, overload, oversized bodies,
over-long prompts and malformed uploads, against a real server process through the SDK."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import KEY, Server, ask, chat_record, write_jsonl

pytestmark = pytest.mark.integration  # a server process


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """A small queue and small caps, so that overload and size limits are cheap to reach."""
    work = tmp_path_factory.mktemp("serve-safety")
    running = Server(
        tiny_model_dir, work / "home", "--queue-size", "2", "--max-body-mb", "0.05", "--max-upload-mb", "0.5"
    )
    yield running
    running.stop()


ROUTES = [
    ("GET", "/v1/models"),
    ("GET", "/v1/models/tiny-model0"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/files"),
    ("POST", "/v1/files"),
    ("GET", "/v1/files/file-aaaaaaaaaaaaaaaaaaaaaaaa"),
    ("GET", "/v1/files/file-aaaaaaaaaaaaaaaaaaaaaaaa/content"),
    ("DELETE", "/v1/files/file-aaaaaaaaaaaaaaaaaaaaaaaa"),
    ("GET", "/v1/fine_tuning/jobs"),
    ("POST", "/v1/fine_tuning/jobs"),
    ("GET", "/v1/fine_tuning/jobs/ftjob-aaaaaaaaaaaaaaaaaaaaaaaa"),
    ("POST", "/v1/fine_tuning/jobs/ftjob-aaaaaaaaaaaaaaaaaaaaaaaa/cancel"),
    ("GET", "/v1/fine_tuning/jobs/ftjob-aaaaaaaaaaaaaaaaaaaaaaaa/events"),
    ("GET", "/v1/fine_tuning/jobs/ftjob-aaaaaaaaaaaaaaaaaaaaaaaa/checkpoints"),
    ("GET", "/no/such/route"),
]


def test_every_route_but_health_needs_the_key(server):
    assert httpx.get(server.url + "/health").status_code == 200
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            response = httpx.request(method, server.url + path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "invalid_api_key"
    with_key = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert with_key.status_code == 200


def test_traversal_names_are_rejected(server, tmp_path):
    client = server.client()
    headers = {"Authorization": f"Bearer {KEY}"}
    for path in (
        "/v1/files/..%2F..%2Fserve.db/content",
        "/v1/files/file-../content",
        "/v1/files/..",
        "/v1/fine_tuning/jobs/..%2Fjobs/events",
        "/v1/fine_tuning/jobs/ftjob-..%2F..%2Fx",
    ):
        response = httpx.get(server.url + path, headers=headers)
        assert response.status_code == 404, path
        assert b"SQLite" not in response.content
    for model in ("../../etc/passwd", "ft:..:x", "/etc/passwd", "tiny-model0/../x"):
        with pytest.raises(Exception) as caught:
            ask(client, model, "hi")
        assert getattr(caught.value, "status_code", None) in (400, 404), model
    from openai import BadRequestError, NotFoundError

    with pytest.raises((BadRequestError, NotFoundError)):
        client.fine_tuning.jobs.create(training_file="../serve.db", model="tiny-model0")
    evil = write_jsonl(tmp_path / "x.jsonl", [chat_record("q", "a")])
    stored = httpx.post(
        server.url + "/v1/files",
        headers=headers,
        data={"purpose": "fine-tune"},
        files={"file": ("../../../escaped.jsonl", evil.read_bytes())},
    ).json()
    assert stored["filename"] == "escaped.jsonl"
    assert not list(server.home.parent.rglob("escaped.jsonl"))


def test_three_times_overload_gets_429_and_the_server_lives(server):
    body = {
        "model": "tiny-model0",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 300,
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {KEY}"}

    def post(_):
        return httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=120)

    with ThreadPoolExecutor(9) as pool:  # the model thread takes one, the queue holds 2: 9 is 3x capacity
        responses = list(pool.map(post, range(9)))
    codes = [r.status_code for r in responses]
    assert 429 in codes and 200 in codes, codes
    assert set(codes) <= {200, 429}
    busy = next(r for r in responses if r.status_code == 429)
    assert int(busy.headers["Retry-After"]) >= 1 and busy.json()["error"]["code"] == "rate_limit_exceeded"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    assert ask(server.client(), "tiny-model0", "hi")  # and it still answers


def test_size_cap_context_and_upload_validation(server, tmp_path):
    headers = {"Authorization": f"Bearer {KEY}"}
    big = {"model": "tiny-model0", "messages": [{"role": "user", "content": "x" * 60_000}]}
    assert httpx.post(server.url + "/v1/chat/completions", json=big, headers=headers).status_code == 413
    chunked = (json.dumps(big).encode()[i : i + 4096] for i in range(0, 70_000, 4096))  # no Content-Length to trust
    as_json = {**headers, "Content-Type": "application/json"}
    response = httpx.post(server.url + "/v1/chat/completions", content=chunked, headers=as_json)
    assert response.status_code == 413 and "exceeds" in response.json()["error"]["message"]
    assert httpx.get(server.url + "/health").status_code == 200
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps(chat_record("q", "a" * 700_000)) + "\n")
    response = httpx.post(
        server.url + "/v1/files",
        headers=headers,
        data={"purpose": "fine-tune"},
        files={"file": ("huge.jsonl", huge.read_bytes())},
    )
    assert response.status_code == 413

    from openai import BadRequestError

    client = server.client()
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(
            model="tiny-model0", messages=[{"role": "user", "content": "hi"}], max_tokens=600
        )
    message = caught.value.body["message"]
    prompt_tokens = client.chat.completions.create(
        model="tiny-model0", messages=[{"role": "user", "content": "hi"}], max_tokens=1
    ).usage.prompt_tokens
    assert "512" in message and f"{prompt_tokens + 600} tokens" in message and "600 in the completion" in message

    bad = write_jsonl(
        tmp_path / "mine.jsonl",
        [chat_record("q", "a"), {"messages": [{"role": "user", "content": "q"}, {"role": "asistant", "content": "a"}]}],
    )
    with pytest.raises(BadRequestError) as caught:
        client.files.create(file=open(bad, "rb"), purpose="fine-tune")
    assert "mine.jsonl:2" in caught.value.body["message"] and "messages[1].role" in caught.value.body["message"]
    assert "mine.jsonl" not in [f.filename for f in client.files.list()]
