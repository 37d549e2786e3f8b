"""The server's background workers outlive their own error paths, and /health says when one is dead."""

from __future__ import annotations

import sqlite3
import time
from types import SimpleNamespace

import httpx
import pytest

from buxiban.adapters.registry import Registry
from buxiban.serve.tuning import hyper
from buxiban.serve.tuning.database import Store
from buxiban.serve.tuning.job_worker import MAX_SERVER_STOPS, JobWorker


def a_job(store: Store, status: str = "validating_files") -> dict:
    method = hyper.parse_method(None, {})
    job = store.add_job(
        {
            "id": "ftjob-" + "b" * 24,
            "model": "m",
            "training_file": "file-x",
            "validation_file": None,
            "suffix": None,
            "seed": 1,
            "hyperparameters": method["hyperparameters"],
            "method": method,
            "metadata": None,
        }
    )
    if status != "validating_files":
        store.update_job(job["id"], status=status)
    return job


def worker(tmp_path) -> JobWorker:
    store = Store(tmp_path / "home")
    return JobWorker(store, Registry(tmp_path / "home"), "m", "m", {"m"}, 135_000_000)


def wait_for(condition, seconds: float = 10) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_job_worker_survives_a_failing_status_write(tmp_path, monkeypatch):
    """A job's surprise, then the database refusing twice to record it (a full disk): the failure is
    recorded on the third try and the thread lives on."""
    jobs = worker(tmp_path)
    job = a_job(jobs.store)
    monkeypatch.setattr(jobs, "validate", lambda _job: (_ for _ in ()).throw(RuntimeError("surprise")))
    real_update, refusals = jobs.store.update_job, []

    def flaky_update(job_id, **values):
        if values.get("status") == "failed" and len(refusals) < 2:
            refusals.append(1)
            raise sqlite3.OperationalError("database or disk is full")
        return real_update(job_id, **values)

    monkeypatch.setattr(jobs.store, "update_job", flaky_update)
    jobs.start()
    try:
        assert wait_for(lambda: jobs.store.get_job(job["id"])["status"] == "failed")
        assert len(refusals) == 2 and jobs.alive
        assert "surprise" in jobs.store.get_job(job["id"])["error"]["message"]
    finally:
        jobs.stop()


def test_a_job_the_server_keeps_dying_under_is_failed_not_resumed(tmp_path):
    jobs = worker(tmp_path)
    job = a_job(jobs.store, status="running")
    for restart in range(1, MAX_SERVER_STOPS):
        jobs.recover()  # the server came back up with the job marked running
        assert jobs.store.get_job(job["id"])["status"] == "queued", restart
        jobs.store.update_job(job["id"], status="running")
    jobs.recover()
    stored = jobs.store.get_job(job["id"])
    assert stored["status"] == "failed" and f"stopped {MAX_SERVER_STOPS} times" in stored["error"]["message"]


def test_the_evaluation_queue_survives_a_failing_evaluation(tmp_path, monkeypatch):
    from buxiban.serve.dashboard import eval_runner

    evals = eval_runner.EvalQueue()
    monkeypatch.setattr(eval_runner, "start_child", lambda *a, **k: (_ for _ in ()).throw(OSError("no fork")))
    evals.start()
    try:
        run = tmp_path / "run"
        run.mkdir()
        task = {"status": "queued"}
        evals.waiting.put(eval_runner.QueuedEval(run, ["buxiban", "eval"], task))
        assert wait_for(lambda: task["status"] == "failed") and "no fork" in task["error"]
        assert evals.alive
    finally:
        evals.stop()


@pytest.mark.parametrize("jobs_alive, status", [(True, 200), (False, 503)])
def test_health_reports_a_dead_worker(jobs_alive, status, tmp_path):
    import asyncio

    from buxiban.serve.app import ServeSettings, ServeState, create_app

    pool = SimpleNamespace(base_id="m", queue=SimpleNamespace(qsize=lambda: 0), attached={}, served=0)
    state = ServeState(
        ServeSettings(home=tmp_path),
        Store(tmp_path),
        Registry(tmp_path),
        pool,
        SimpleNamespace(alive=jobs_alive),
        0,
        SimpleNamespace(alive=True),
    )
    app = create_app(ServeSettings(home=tmp_path), state)

    async def get():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get("/health")

    response = asyncio.run(get())
    assert response.status_code == status
    assert response.json()["workers"]["jobs"] == ("alive" if jobs_alive else "dead")
