"""The dashboard end to end: a real `buxiban serve` process on the tiny model, real runs trained here,
a RAG index, and Debian's Chromium driven by Playwright. Each page is loaded and checked for the content
it must show; a screenshot of each goes to $BUXIBAN_SCREENSHOTS (default: a pytest temporary folder).

Chromium missing: skipped locally with the reason, a failure in CI (CI=true), where scripts/setup.sh
installs it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from buxiban.config import load_config
from buxiban.train.sft import train_sft

from conftest import KEY, QUESTIONS, SYSTEM, Server, chat_record, write_docs, write_jsonl

pytestmark = pytest.mark.integration  # a server process and a browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ANSWERS = [
    "The City plan costs NT$690 per month.",
    "The deposit is NT$3,000.",
    "Support is open 08:00 to 21:00 every day.",
    '{"team": "repairs", "priority": "urgent"}',
]
WAIT_MS = 120_000  # jobs and evaluations start a Python process each: seconds, more on a loaded machine


def _missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is missing: pip install -e '.[test]'"
    return None


if _missing():
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the dashboard tests need a browser in CI: {_missing()}", pytrace=False)
    pytest.skip(_missing(), allow_module_level=True)


def train_run(model_dir: Path, train: Path, validation: Path, out: Path, steps: int) -> Path:
    """As test_serve's adapters (the tiny model learns the four answers), with validation and checkpoints."""
    config = load_config(
        None,
        [
            f"model={model_dir}",
            f"data.train={train}",
            f"data.validation={validation}",
            f"output_dir={out}",
            f"train.max_steps={steps}",
            "train.batch_size=4",
            "train.learning_rate=1e-2",
            "train.precision=fp32",
            "lora.dropout=0",
            "train.threads=1",
            "train.eval_every=5",
            "train.checkpoint_every=10",
        ],
    )
    train_sft(config, progress=False, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dashboard")


@pytest.fixture(scope="module")
def data_files(work) -> dict[str, Path]:
    records = [chat_record(q, a) for q, a in zip(QUESTIONS, ANSWERS)]
    return {
        "train": write_jsonl(work / "faq.jsonl", records * 2),
        "validation": write_jsonl(work / "faq-check.jsonl", records),
        "bad": write_jsonl(work / "typo.jsonl", [records[0], {"messages": [{"role": "asistant", "content": "hi"}]}]),
    }


@pytest.fixture(scope="module")
def server(tiny_model_dir, tiny_encoder_dir, data_files, work):
    from buxiban.rag.index import build_index

    runs = work / "runs"
    registered = train_run(tiny_model_dir, data_files["train"], data_files["validation"], runs / "faq-40", 40)
    train_run(tiny_model_dir, data_files["train"], data_files["validation"], runs / "faq-5", 5)
    index = work / "docs.db"
    build_index(write_docs(work / "docs"), index, embedder_spec=str(tiny_encoder_dir), bm25=True)
    running = Server(
        tiny_model_dir,
        work / "home",
        "--adapter",
        f"yunshan={registered}",
        "--runs",
        str(runs),
        "--rag",
        f"docs={index}",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("BUXIBAN_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="buxiban-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture()
def page(browser, server):
    """A tab that already holds the API key, and that fails the test on a script error or on any
    request leaving the server (the dashboard must work offline)."""
    tab = browser.new_page()
    tab.add_init_script(f"localStorage.setItem('buxiban.apiKey', {KEY!r})")
    errors, elsewhere = [], []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on(
        "request", lambda request: None if request.url.startswith(server.url + "/") else elsewhere.append(request.url)
    )
    yield tab
    tab.close()
    assert not errors, errors
    assert not elsewhere, elsewhere


def open_page(tab, server, route: str):
    tab.goto(f"{server.url}/ui/#/{route}")
    return tab


def api(server, path: str, **kwargs):
    response = httpx.request(
        kwargs.pop("method", "GET"), server.url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=30, **kwargs
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_eval(server, run_id: str) -> dict:
    deadline = time.time() + WAIT_MS / 1000
    while time.time() < deadline:
        run = api(server, "/api/run", params={"id": run_id})
        if run["eval_task"] and run["eval_task"]["status"] not in ("queued", "running"):
            assert run["eval_task"]["status"] == "succeeded", run["eval_task"]
            return run
        time.sleep(0.5)
    raise AssertionError(f"the evaluation of {run_id} did not finish")


def test_pages_load_without_the_key_then_ask_for_it(browser, server):
    assert httpx.get(server.url + "/api/runs").status_code == 401
    asset = httpx.get(server.url + "/ui/app.js")
    assert asset.status_code == 200 and "connect-src 'self'" in asset.headers["content-security-policy"]
    assert httpx.get(server.url + "/", follow_redirects=False).headers["location"] == "/ui/"
    tab = browser.new_page()
    try:
        # the profile is shared by the module's tests: any `page` before this one stored the key
        tab.goto(server.url + "/health")
        tab.evaluate("localStorage.clear()")
        tab.goto(server.url + "/")
        tab.fill("#key-input", "wrong")
        tab.press("#key-input", "Enter")
        tab.wait_for_selector("#key-error:has-text('refused')")
        tab.fill("#key-input", KEY)
        tab.press("#key-input", "Enter")
        tab.wait_for_selector("a.run-name:has-text('yunshan')")
    finally:
        tab.evaluate("localStorage.clear()")
        tab.close()


def test_runs_page_lists_registered_and_folder_runs(page, server, screenshots):
    open_page(page, server, "runs")
    page.wait_for_selector("a.run-name:has-text('faq-5')")
    rows = {
        row.query_selector("a.run-name").inner_text(): row.inner_text() for row in page.query_selector_all("#rows tr")
    }
    assert set(rows) >= {"yunshan", "faq-5"}
    assert "registered adapter" in rows["yunshan"] and "runs folder" in rows["faq-5"]
    assert "complete" in rows["yunshan"] and "sft/lora" in rows["yunshan"] and "tiny-model0" in rows["yunshan"]
    assert "faq.jsonl" in rows["yunshan"] and "8 examples" in rows["yunshan"]
    summary = {r["name"]: r for r in api(server, "/api/runs")["runs"]}
    assert f"{summary['yunshan']['best_val_loss']:.4f}" in rows["yunshan"]
    assert "faq-40" not in rows  # registered: listed once, under its name
    page.screenshot(path=str(screenshots / "runs.png"), full_page=True)


def test_run_page_draws_loss_curves_and_lists_hyperparameters_and_checkpoints(page, server, screenshots):
    open_page(page, server, "run/yunshan")
    train = page.wait_for_selector("#curve path[data-series='training loss']")
    assert train.get_attribute("data-points") == "40"  # one point per optimizer step
    assert page.get_attribute("#curve path[data-series='validation loss']", "data-points") == "8"  # every 5 steps
    assert page.locator("#curve circle.dot.val").count() == 8
    hyper = page.inner_text("#hyper")
    assert re.search(r"train\.learning_rate\s+0\.01", hyper) and re.search(r"train\.max_steps\s+40", hyper)
    assert "trained parameters" in hyper
    assert re.search(r"^\s*30\s", page.inner_text("#checkpoints tbody"), re.M)  # checkpoint_every=10: step 30 kept
    assert "step 40 of 40" in page.inner_text("#curve-note")
    page.screenshot(path=str(screenshots / "run.png"), full_page=True)


def test_evaluating_against_the_base_from_the_run_page_then_comparing_runs(page, server, screenshots):
    open_page(page, server, "run/yunshan")
    page.wait_for_selector("#eval-form button:not([disabled])")
    page.select_option("#eval-form select[name=test]", "validation")
    page.click("#eval-form button[type=submit]")
    page.wait_for_selector("#eval table.scores", timeout=WAIT_MS)
    scores = {
        row.get_attribute("data-system"): row.inner_text() for row in page.query_selector_all("#eval tr[data-system]")
    }
    assert set(scores) == {"base", "few-shot", "fine-tuned"}
    assert scores["fine-tuned"].split()[1:3] == [
        "1.000",
        "[0.51,",
    ]  # the four answers it learned; 4 of 4 is no certainty
    assert scores["base"].split()[1] == "0.000"
    assert page.locator("#eval svg g.ci").count() == 3
    assert "fine-tuned vs base: exact match differs on 4 examples" in page.inner_text("#eval")
    assert page.locator("#eval .examples tbody tr").count() == 4
    assert page.locator("#eval .examples del").count() >= 4  # the base's misses, word-diffed
    page.select_option("#eval .example-filter", "wrong")
    assert page.locator("#eval .examples tbody tr:visible").count() == 0  # the fine-tuned model got all right
    page.screenshot(path=str(screenshots / "run-eval.png"), full_page=True)

    api(server, "/api/run/eval", method="POST", json={"id": "runs/faq-5", "test": "validation", "shots": 0})
    wait_for_eval(server, "runs/faq-5")
    open_page(page, server, "compare?ids=yunshan,runs%2Ffaq-5")
    page.wait_for_selector("#result .pair")
    labels = [g.get_attribute("data-label") for g in page.query_selector_all("#result svg g.ci")]
    assert labels == ["base (tiny-model0)", "few-shot (tiny-model0)", "yunshan", "faq-5"]
    pair = page.inner_text("#result .pair")
    assert "faq-5 against yunshan" in pair and "4 shared test examples: exact match 1.000 →" in pair
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)


def test_data_page_shows_the_check_the_histogram_and_trained_tokens(page, server, data_files, screenshots):
    open_page(page, server, "data?source=run:train:yunshan")
    page.wait_for_selector("#histogram svg")
    assert "faq.jsonl: OK, no format problems" in page.inner_text("#verdict")
    assert int(page.get_attribute("#histogram svg", "data-bars")) >= 1
    assert page.locator("#histogram rect.bar").count() >= 1
    marked = page.locator("pre.rendered mark").all_inner_texts()
    assert marked and marked[0].startswith(ANSWERS[0])  # the answer is trained, the question is not
    assert "duplicates" in page.inner_text(".tiles")
    page.screenshot(path=str(screenshots / "data.png"), full_page=True)

    page.set_input_files("#local", str(data_files["bad"]))
    page.wait_for_selector("#verdict:has-text('problem')")
    assert "typo.jsonl:2" in page.inner_text("#report") and "asistant" in page.inner_text("#report")


def test_playground_answers_alone_side_by_side_and_from_documents(page, server, screenshots):
    open_page(page, server, "playground?model=yunshan")
    page.wait_for_selector("#pane-a select")
    assert page.input_value("#system") == SYSTEM  # the run's own system prompt
    page.fill("#prompt", QUESTIONS[0])
    page.click("#send")
    answer = page.wait_for_selector("#pane-a .bubble.assistant:not(.pending)").inner_text()
    assert answer == ANSWERS[0]

    page.click("#clear")  # the model learned single questions: a fresh conversation for each
    page.check("#side-by-side")
    page.select_option("#pane-b select", "tiny-model0")
    page.fill("#prompt", QUESTIONS[1])
    page.press("#prompt", "Enter")
    page.locator(".bubble.assistant:not(.pending)").nth(1).wait_for()
    tuned, base = (page.locator(f"#pane-{p} .bubble.assistant").last.inner_text() for p in "ab")
    assert tuned == ANSWERS[1] and base != tuned

    page.click("#clear")
    page.select_option("#rag", "docs")
    page.fill("#prompt", "How much is the Cargo plan?")
    page.click("#send")
    page.locator(".bubble.assistant:not(.pending)").nth(1).wait_for()
    sources = page.locator("#pane-a .sources").last.inner_text()
    assert (
        "pricing.md > Pricing > Cargo" in sources and page.locator("#pane-a .sources").last.locator("li").count() == 3
    )
    page.screenshot(path=str(screenshots / "playground.png"), full_page=True)


def test_a_job_started_from_the_jobs_page_finishes_and_its_curve_grows_live(page, server, data_files, screenshots):
    open_page(page, server, "jobs")
    page.set_input_files("#upload-file", str(data_files["validation"]))
    page.click("#upload button")
    page.wait_for_selector("#upload-result:has-text('Stored faq-check.jsonl: 4 chat examples')")
    page.select_option("#create select[name=validation_file]", label="faq-check.jsonl (4 examples)")
    page.fill("#create input[name=suffix]", "from-browser")
    page.fill("#create input[name=n_epochs]", "3")
    page.fill("#create input[name=batch_size]", "2")
    page.evaluate("window.sameDocument = true")  # gone if anything below reloaded the page
    page.click("#start")
    page.wait_for_selector("#create-result:has-text('Started ftjob-')")
    page.wait_for_selector("#follow-title .s-succeeded", timeout=WAIT_MS)
    page.wait_for_selector("#follow-curve path[data-series='training loss'][data-points='6']")
    assert page.get_attribute("#follow-curve path[data-series='validation loss']", "data-points") == "3"
    assert page.evaluate("window.sameDocument") is True
    assert "from-browser" in page.inner_text("#jobs")
    page.screenshot(path=str(screenshots / "jobs.png"), full_page=True)

    page.click("#follow-run")
    page.wait_for_selector("#curve path[data-series='training loss'][data-points='6']")
    assert "succeeded" in page.inner_text("#head") and "faq-check.jsonl" in page.inner_text("#head")
    page.screenshot(path=str(screenshots / "job-run.png"), full_page=True)
