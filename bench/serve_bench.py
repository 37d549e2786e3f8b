"""`buxiban serve` speed: tokens/s for 1 and 8 concurrent streams, time to first token, and the
cost of switching adapters between requests. Talks to the server through the official SDK.

    .venv/bin/python bench/serve_bench.py --model embedded --out bench/results-serve-cpu-2core.json
    .venv/bin/python bench/serve_bench.py --url http://127.0.0.1:8000/v1 --adapters a,b

Without --url it starts `buxiban serve` itself on a free port with a temporary home and, without
--adapters, trains two one-step LoRA adapters on the example data so there is something to switch.
Greedy decoding; a stream that ends early (end-of-turn) counts only the tokens it produced."""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [
    "How much is the City plan?",
    "Is there a deposit?",
    "When is support open?",
    "Can I pause my plan?",
    "What happens if the bike is stolen?",
    "Do you deliver to Tamsui?",
    "How do I cancel?",
    "Is insurance included?",
]


def stream_once(client, model: str, prompt: str, max_tokens: int) -> dict:
    started = time.perf_counter()
    first = None
    tokens = 0
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    ended = time.perf_counter()
    first = first or ended
    return {
        "ttft_s": first - started,
        "total_s": ended - started,
        "tokens": tokens,
        "decode_tokens_per_s": (tokens - 1) / (ended - first) if tokens > 1 and ended > first else None,
    }


def streams(client, model: str, concurrent: int, max_tokens: int) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrent) as pool:
        results = list(
            pool.map(lambda i: stream_once(client, model, PROMPTS[i % len(PROMPTS)], max_tokens), range(concurrent))
        )
    wall = time.perf_counter() - started
    ttfts = [r["ttft_s"] for r in results]
    return {
        "streams": concurrent,
        "tokens": sum(r["tokens"] for r in results),
        "wall_s": round(wall, 3),
        "tokens_per_s": round(sum(r["tokens"] for r in results) / wall, 1),
        "ttft_s_mean": round(statistics.fmean(ttfts), 3),
        "ttft_s_max": round(max(ttfts), 3),
    }


def one_token(client, model: str) -> float:
    started = time.perf_counter()
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0
    )
    return time.perf_counter() - started


def switching(client, first: str, second: str, rounds: int) -> dict:
    """One-token requests: the same adapter again and again, then alternating; the difference of the
    medians is what a switch costs. The first request to each adapter also attaches it (loads it)."""
    attach = [one_token(client, first), one_token(client, second)]
    same = [one_token(client, first) for _ in range(rounds)]
    alternating = [one_token(client, name) for _ in range(rounds // 2) for name in (first, second)]
    return {
        "first_request_with_attach_s": [round(a, 4) for a in attach],
        "same_adapter_median_s": round(statistics.median(same), 4),
        "alternating_median_s": round(statistics.median(alternating), 4),
        "switch_cost_s": round(statistics.median(alternating) - statistics.median(same), 4),
    }


def train_tiny_adapters(model: str, directory: Path) -> dict[str, str]:
    from buxiban.config import load_config
    from buxiban.train.sft import train_sft

    runs = {}
    for name, seed in (("bench-a", 1), ("bench-b", 2)):
        out = directory / name
        config = load_config(
            None,
            [
                f"model={model}",
                f"data.train={ROOT / 'examples/yunshan/train.jsonl'}",
                f"output_dir={out}",
                "train.max_steps=1",
                "train.batch_size=1",
                f"train.seed={seed}",
                "data.validation_fraction=0",
                "data.max_length=128",
            ],
        )
        train_sft(config, progress=False, log=lambda _: None)
        runs[name] = str(out)
    return runs


def start_server(model: str, home: Path, adapters: dict[str, str], threads: int | None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = (
        [
            sys.executable,
            "-m",
            "buxiban.cli",
            "serve",
            "--model",
            model,
            "--home",
            str(home),
            "--port",
            str(port),
            "--queue-size",
            "64",
        ]
        + (["--threads", str(threads)] if threads else [])
        + [arg for name, run in adapters.items() for arg in ("--adapter", f"{name}={run}")]
    )
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "BUXIBAN_API_KEY": ""})
    import httpx

    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit("the server exited while starting")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url + "/v1"
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not start in 5 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server's /v1 URL (default: start one)")
    parser.add_argument("--model", default="embedded", help="base model for the server this script starts")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--adapters", help="two registered adapter names to switch between, comma-separated")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10, help="one-token requests per switching measurement")
    parser.add_argument("--threads", type=int, help="generation threads for the server this script starts")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    from openai import OpenAI

    process = None
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as scratch:
        names = args.adapters.split(",") if args.adapters else []
        if args.url is None:
            runs = {} if names else train_tiny_adapters(args.model, Path(scratch))
            names = names or list(runs)
            process, url = start_server(args.model, Path(scratch) / "home", runs, args.threads)
        else:
            url = args.url
        try:
            client = OpenAI(base_url=url, api_key=args.api_key, max_retries=0, timeout=600)
            base = client.models.list().data[0].id
            stream_once(client, base, "warm up", 4)
            results = {
                "model": base,
                "max_tokens": args.max_tokens,
                "cores": len(os.sched_getaffinity(0)),
                "server_threads": args.threads,
                "load_average_before": os.getloadavg()[0],
                "one_stream": streams(client, base, 1, args.max_tokens),
                "eight_streams": streams(client, base, 8, args.max_tokens),
            }
            if len(names) >= 2:
                results["adapter_switch"] = switching(client, names[0], names[1], args.rounds)
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
