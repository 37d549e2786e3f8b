"""What a hostile web page, a rebound DNS name or a crafted request can get from `buxiban serve`:
the Guard middleware in front of every route, in process (fast), and the same refusals from a live,
keyless server through raw HTTP and the official SDK (integration)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from buxiban.serve.safety import Guard, Limits, allowed_hosts, host_name


def through_guard(method, path, headers, body=b"", bound="127.0.0.1", extra_hosts=(), key=None):
    """(status the client saw, whether the app behind the guard was reached)."""
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = Guard(app, key, Limits(), allowed_hosts(bound, tuple(extra_hosts)))
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if body:
        raw.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": raw}
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"], bool(reached)


LOCAL = {"host": "127.0.0.1:8000"}
JSON = {"content-type": "application/json"}


def test_host_names_are_parsed_as_browsers_send_them():
    assert host_name("127.0.0.1:8000") == "127.0.0.1" and host_name("[::1]:8000") == "::1"
    assert host_name("Example.ORG") == "example.org" and host_name("localhost") == "localhost"
    assert allowed_hosts("0.0.0.0") is None  # a wildcard bind needs a key, which is then the guard
    assert "box.lan" in allowed_hosts("0.0.0.0", ("box.lan",)) and "0.0.0.0" not in allowed_hosts("0.0.0.0", ("x",))


@pytest.mark.parametrize(
    "method, path, headers, body, status",
    [
        # DNS rebinding: the page's own name now points at 127.0.0.1, and the browser sends it as Host
        ("GET", "/v1/files", {"host": "evil.example:8000"}, b"", 403),
        ("GET", "/v1/files", {"host": "127.0.0.1.evil.example"}, b"", 403),
        # a form on a web page posting to the local server: browsers send Origin (and Sec-Fetch-Site)
        (
            "POST",
            "/v1/files",
            {**LOCAL, "origin": "https://evil.example", "content-type": "multipart/form-data"},
            b"x",
            403,
        ),
        ("POST", "/v1/fine_tuning/jobs/ftjob-a/cancel", {**LOCAL, "sec-fetch-site": "cross-site"}, b"", 403),
        ("DELETE", "/v1/files/file-a", {**LOCAL, "origin": "null"}, b"", 403),
        # text/plain is a "simple" request a page may send without asking: JSON routes need JSON
        ("POST", "/v1/chat/completions", {**LOCAL, "content-type": "text/plain"}, b'{"model": "m"}', 415),
        ("POST", "/api/run/eval", {**LOCAL, "content-type": "application/x-www-form-urlencoded"}, b"a=1", 415),
        ("POST", "/v1/chat/completions", {**LOCAL}, b'{"model": "m"}', 415),
        # what the SDK, curl and the dashboard send is untouched
        ("POST", "/v1/chat/completions", {**LOCAL, **JSON}, b'{"model": "m"}', 200),
        ("POST", "/v1/chat/completions", {**LOCAL, "content-type": "application/json; charset=utf-8"}, b"{}", 200),
        ("POST", "/v1/files", {**LOCAL, "content-type": "multipart/form-data; boundary=x"}, b"x", 200),
        ("POST", "/v1/fine_tuning/jobs/ftjob-a/cancel", {**LOCAL}, b"", 200),
        ("POST", "/v1/chat/completions", {**LOCAL, **JSON, "origin": "http://127.0.0.1:8000"}, b"{}", 200),
        (
            "POST",
            "/v1/chat/completions",
            {"host": "localhost:8000", **JSON, "origin": "http://localhost:8000"},
            b"{}",
            200,
        ),
        ("GET", "/v1/models", {"host": "[::1]:8000", "sec-fetch-site": "cross-site"}, b"", 200),  # reads need a key
    ],
)
def test_the_guard_refuses_cross_site_rebound_and_non_json_requests(method, path, headers, body, status):
    seen, reached = through_guard(method, path, headers, body)
    assert seen == status and reached == (status == 200)


def test_an_allowed_host_and_a_keyed_wildcard_bind():
    assert through_guard("GET", "/v1/models", {"host": "box.lan:8000"}, extra_hosts=("box.lan",))[0] == 200
    assert through_guard("GET", "/v1/models", {"host": "other.lan"}, extra_hosts=("box.lan",))[0] == 403
    # bound to every interface with a key: any Host, but still no cross-site posts
    wildcard = {"bound": "0.0.0.0", "key": "k"}
    assert through_guard("GET", "/health", {"host": "10.0.0.5:8000"}, **wildcard)[0] == 200
    cross = {"host": "10.0.0.5:8000", "origin": "https://evil.example", **JSON}
    assert through_guard("POST", "/v1/chat/completions", cross, b"{}", **wildcard)[0] == 403
    same = {"host": "10.0.0.5:8000", "origin": "http://10.0.0.5:8000", **JSON, "authorization": "Bearer k"}
    assert through_guard("POST", "/v1/chat/completions", same, b"{}", **wildcard)[0] == 200


@pytest.fixture(scope="module")
def keyless(tiny_model_dir, tmp_path_factory):
    from conftest import Server

    running = Server(tiny_model_dir, tmp_path_factory.mktemp("hostile") / "home", keyless=True)
    yield running
    running.stop()


@pytest.mark.integration
def test_a_live_keyless_server_refuses_what_a_web_page_could_send(keyless, tmp_path):
    from openai import OpenAI

    url = keyless.url
    form = httpx.post(
        url + "/v1/files",
        files={"file": ("x.jsonl", b"{}\n")},
        data={"purpose": "fine-tune"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert form.status_code == 403 and "cross-site" in form.json()["error"]["message"]
    plain = httpx.post(
        url + "/v1/chat/completions",
        content=json.dumps({"model": "x", "messages": [{"role": "user", "content": "hi"}]}),
        headers={"Content-Type": "text/plain"},
    )
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_media_type"
    rebound = httpx.get(url + "/v1/files", headers={"Host": "evil.example"})
    assert rebound.status_code == 403 and "--allowed-host evil.example" in rebound.json()["error"]["message"]
    assert httpx.get(url + "/v1/files").status_code == 200  # the user's own tools still work
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    assert client.models.list().data
    assert client.files.list().data == []  # nothing was stored by the refused upload


class Body:
    def __init__(self, raw: bytes):
        self.raw = raw

    async def body(self):
        return self.raw


def read(raw: bytes | str):
    from buxiban.serve.jsonbody import read_json

    return asyncio.run(read_json(Body(raw.encode() if isinstance(raw, str) else raw)))


@pytest.mark.parametrize(
    "raw, param",
    [
        ('{"model": "m", "temperature": NaN}', "temperature"),
        ('{"top_p": Infinity}', "top_p"),
        ('{"x": {"y": [1, -Infinity]}}', "x.y[1]"),
        ('{"temperature": 1e999}', "temperature"),
        ('{"seed": ' + "9" * 5000 + "}", "seed"),
        ('{"seed": 9223372036854775808}', "seed"),
        ('{"messages": [' + "[" * 40 + "]" * 40 + "]}", "messages" + "[0]" * 32),
    ],
)
def test_bad_numbers_and_depth_are_refused_naming_where(raw, param):
    from buxiban.errors import ServeError

    with pytest.raises(ServeError) as caught:
        read(raw)
    assert caught.value.param == param and caught.value.status == 400


def test_a_body_too_deep_for_the_parser_is_a_400_not_a_crash():
    from buxiban.errors import ServeError

    with pytest.raises(ServeError, match="nests deeper"):
        read('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert read('{"seed": 9223372036854775807, "temperature": 0.5, "ok": true}')["seed"] == 2**63 - 1


def test_sampling_and_job_fields_refuse_non_finite_numbers_and_bad_metadata():
    from buxiban.errors import ServeError
    from buxiban.serve.api.parsing import sampling
    from buxiban.serve.tuning import hyper
    from buxiban.serve.tuning.routes_tuning import check_metadata

    for key in ("temperature", "top_p"):
        with pytest.raises(ServeError) as caught:
            sampling({key: float("nan")}, 5, 100)
        assert caught.value.param == key
    with pytest.raises(ServeError) as caught:
        sampling({"seed": 2**64}, 5, 100)
    assert caught.value.param == "seed"
    with pytest.raises(ServeError) as caught:
        hyper.parse_method(None, {"learning_rate_multiplier": float("nan")})
    assert caught.value.param.endswith("learning_rate_multiplier")
    assert check_metadata({"team": "support"}) == {"team": "support"}
    for bad, where in (({"k": 3}, "metadata.k"), ({"k": "v" * 600}, "metadata.k"), ("x", "metadata")):
        with pytest.raises(ServeError) as caught:
            check_metadata(bad)
        assert caught.value.param == where
    with pytest.raises(ServeError):
        check_metadata({f"k{i}": "v" for i in range(17)})


def test_a_stored_job_with_a_nan_never_breaks_a_listing(tmp_path):
    """A job written by an older server with NaN in its numbers lists as null, so the listing route can
    always answer valid JSON."""
    from buxiban.serve.tuning import hyper
    from buxiban.serve.tuning.database import Store
    from buxiban.serve.tuning.openai_objects import job_object

    store = Store(tmp_path)
    method = hyper.parse_method(None, {})
    method["hyperparameters"]["learning_rate_multiplier"] = float("nan")
    job = store.add_job(
        {
            "id": "ftjob-" + "a" * 24,
            "model": "m",
            "training_file": "file-x",
            "validation_file": None,
            "suffix": None,
            "seed": 1,
            "hyperparameters": {**method["hyperparameters"], "learning_rate_multiplier": float("nan")},
            "method": method,
            "metadata": None,
        }
    )
    store.update_job(
        job["id"], hyperparameters={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": float("nan")}
    )
    shown = job_object(store.get_job(job["id"]))
    json.dumps(shown, allow_nan=False)  # what the JSON response does: no ValueError
    assert shown["hyperparameters"]["learning_rate_multiplier"] is None


@pytest.mark.integration
def test_a_live_server_answers_hostile_numbers_with_400s_naming_the_field(keyless):
    from openai import BadRequestError, OpenAI

    url, headers = keyless.url, {"Content-Type": "application/json"}
    chat = '{"model": "tiny-model0", "messages": [{"role": "user", "content": "hi"}], '
    for tail, param in (('"temperature": NaN}', "temperature"), ('"seed": ' + "7" * 5000 + "}", "seed")):
        response = httpx.post(url + "/v1/chat/completions", content=chat + tail, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["param"] == param
    nested = '{"model": "x", "metadata": ' + '{"a": ' * 50 + "1" + "}" * 50 + "}"
    assert httpx.post(url + "/v1/fine_tuning/jobs", content=nested, headers=headers).status_code == 400
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(
            model="tiny-model0", messages=[{"role": "user", "content": "hi"}], seed=2**70, max_tokens=2
        )
    assert caught.value.body["param"] == "seed"
    job = '{"model": "tiny-model0", "training_file": "file-x", "hyperparameters": {"learning_rate_multiplier": NaN}}'
    refused = httpx.post(url + "/v1/fine_tuning/jobs", content=job, headers=headers)
    assert refused.status_code == 400 and "learning_rate_multiplier" in refused.json()["error"]["param"]
    assert client.fine_tuning.jobs.list().data == []  # nothing stored, and the listing answers


def peak_rss_mib(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


@pytest.mark.integration
def test_a_50_mb_upload_of_bad_lines_is_refused_with_flat_memory(keyless, tmp_path):
    before = peak_rss_mib(keyless.process.pid)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"x\n" * (25 << 20))  # 50 MiB, one byte and a newline per line
    with bad.open("rb") as handle:
        response = httpx.post(
            keyless.url + "/v1/files", files={"file": ("bad.jsonl", handle)}, data={"purpose": "fine-tune"}, timeout=300
        )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("bad.jsonl has at least 1000 problem(s); nothing was stored: bad.jsonl:1:")
    assert peak_rss_mib(keyless.process.pid) - before < 100
    assert not list((keyless.home / "files").glob("*")) if (keyless.home / "files").exists() else True
    assert httpx.get(keyless.url + "/health").json()["status"] == "ok"


@pytest.mark.integration
def test_a_full_disk_during_an_upload_answers_507_and_leaves_nothing(tiny_model_dir, tmp_path):
    from conftest import Server

    home = tmp_path / "home"
    full = Server(tiny_model_dir, home, keyless=True, max_file_bytes=3 << 20)
    try:
        data = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
        response = httpx.post(
            full.url + "/v1/files",
            files={"file": ("big.jsonl", data * 60_000)},  # 5.6 MB: past the 3 MB the "disk" has room for
            data={"purpose": "fine-tune"},
            timeout=120,
        )
        assert response.status_code == 507, response.text
        assert "no room to store" in response.json()["error"]["message"]
        assert not [p for p in home.rglob("*") if p.name.endswith(".uploading")]
        small = httpx.post(
            full.url + "/v1/files", files={"file": ("small.jsonl", data * 8)}, data={"purpose": "fine-tune"}
        )
        assert small.status_code == 200  # the server keeps serving, and stores what fits
    finally:
        full.stop()


@pytest.mark.integration
def test_a_non_streamed_request_whose_client_hangs_up_stops_generating(keyless):
    """Eight long answers asked for, the client gone after a moment: the model thread stops at its
    next decoding step instead of generating the rest for nobody."""

    def steps() -> int:
        return httpx.get(keyless.url + "/health").json()["served"]["decoding_steps"]

    body = {
        "model": "tiny-model0",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 400,
        "n": 8,
        "temperature": 1.0,
        "seed": 3,
    }
    before = steps()
    full = httpx.post(keyless.url + "/v1/chat/completions", json=body, timeout=120).json()
    full_steps = steps() - before
    assert full_steps > 100 and max(c["finish_reason"] == "length" for c in full["choices"])
    before = steps()
    with pytest.raises(httpx.TimeoutException):
        httpx.post(keyless.url + "/v1/chat/completions", json=body, timeout=0.3)
    time.sleep(1.0)  # what a hung-up request would still be generating
    deadline = time.time() + 30
    while httpx.get(keyless.url + "/health").json()["queued_requests"] and time.time() < deadline:
        time.sleep(0.1)
    abandoned_steps = steps() - before
    assert abandoned_steps < full_steps / 2, (abandoned_steps, full_steps)
