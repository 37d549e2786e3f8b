"""The `buxiban` command: one sub-command per pipeline stage. The only place that prints errors and
chooses exit codes; the library raises typed exceptions (buxiban.errors)."""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..allocator import restart_on_jemalloc
from ..errors import BuxibanError, ProblemsError
from .adapters import add_adapter_commands
from .chat import add_chat_commands
from .data import add_data_commands
from .eval import add_eval_commands
from .migrate import add_migrate_commands
from .plan import add_plan_commands
from .rag import add_rag_commands
from .serve import add_serve_commands
from .train import add_train_commands

EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a real command line, not a call from Python (tests)
        restart_on_jemalloc()
    code = run_command(argv)
    if argv is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        end_launched_process(code)
    return code


def end_launched_process(code: int) -> None:
    """One of N launched processes leaves without the interpreter's teardown. With everything saved
    and the process group destroyed, gloo's threads still sometimes abort the process while it is torn
    down ("terminate called without an active exception", SIGABRT, no Python frame): 1 in about 40
    two-process resumes on 2 cores. The launcher then reports the finished run as failed and kills
    the other ranks."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_command(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    quiet_dependencies()
    try:
        return args.handler(args) or 0
    except ProblemsError as exc:
        print(f"error: {exc.summary}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_PROBLEMS
    except BuxibanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def quiet_dependencies() -> None:
    """Dependencies' own progress bars and deprecation chatter would bury buxiban's output."""
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)(\.|$)")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buxiban", description="Fine-tune a chat model into your company's specialist, locally."
    )
    parser.add_argument("--version", action="version", version=f"buxiban {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    add_data_commands(commands)
    add_plan_commands(commands)
    add_rag_commands(commands)
    add_adapter_commands(commands)
    add_serve_commands(commands)
    add_train_commands(commands)
    add_eval_commands(commands)
    add_chat_commands(commands)
    add_migrate_commands(commands)
    return parser
