"""The `buxiban` command: one sub-command per pipeline stage. The only place that prints errors and
chooses exit codes; the library raises typed exceptions (buxiban.errors)."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .cli_adapters import add_adapter_commands
from .cli_data import add_data_commands
from .cli_plan import add_plan_commands
from .cli_eval import add_eval_commands
from .cli_rag import add_rag_commands
from .cli_serve import add_serve_commands
from .allocator import restart_on_jemalloc
from .errors import BuxibanError, ProblemsError

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
    parser = argparse.ArgumentParser(prog="buxiban", description="Fine-tune a chat model into your company's specialist, locally.")
    parser.add_argument("--version", action="version", version=f"buxiban {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    add_data_commands(commands)
    add_plan_commands(commands)
    add_rag_commands(commands)
    add_adapter_commands(commands)
    add_serve_commands(commands)

    train = commands.add_parser("train", help="fine-tune from a YAML config plus key=value overrides")
    train.add_argument("config", help="YAML run config (see examples/yunshan/lora.yaml)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.epochs=2 lora.r=8")
    train.add_argument("--overwrite", action="store_true", help="replace an earlier run in output_dir")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--resume", nargs="?", const="auto", metavar="auto|CHECKPOINT",
                       help="continue from the newest complete checkpoint in output_dir (or the one given)")
    train.add_argument("--force", action="store_true", help="resume even though the config, data or base model changed")
    train.set_defaults(handler=cmd_train)

    add_eval_commands(commands)

    chat = commands.add_parser("chat", help="talk to a fine-tuned run (or a base model)")
    source = chat.add_mutually_exclusive_group()
    source.add_argument("--run", help="a run directory written by `buxiban train`")
    source.add_argument("--model", help="a base model spec instead of a run (default: embedded)")
    source.add_argument("--adapter", help="a registered adapter name (see `buxiban adapters list`)")
    chat.add_argument("-m", "--message", help="ask once, print the answer and exit")
    chat.add_argument("--system", help="system prompt (default: the one most used in the run's training data)")
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument("--rag", metavar="INDEX", help="put the best chunks of this index (`buxiban rag index`) into each question's prompt")
    chat.add_argument("--rag-k", type=int, default=3, help="chunks per question with --rag (default 3)")
    chat.set_defaults(handler=cmd_chat)
    return parser


def cmd_train(args) -> int:
    from .config import load_config
    from .train.rundir import read_manifest

    config = load_config(args.config, args.overrides)  # every config problem surfaces here, before any model loads
    if config.method == "dpo":
        from .train.dpo import train_dpo as train
    else:
        from .train.sft import train_sft as train

    result = train(config, overwrite=args.overwrite, progress=not args.quiet, resume=args.resume, force=args.force)
    val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    print(f"trained {result.steps} steps in {result.seconds / 60:.1f} min ({result.tokens_per_second:.0f} tokens/s): "
          f"final training loss {result.train_loss:.4f}{val}")
    if result.utilization:
        u = result.utilization
        print(f"model FLOPs utilization {u['mfu']:.1%}: {u['achieved_tflops']:.3f} TFLOP/s achieved "
              f"({u['flops_per_token']:,} FLOPs per token) of {u['peak_tflops']:.3f} measured peak ({u['peak_from']})")
    weights = read_manifest(result.run_dir).get("weights", "adapter")
    print(f"run saved to {result.run_dir} (trained weights in {result.run_dir / weights})")
    return 0


def cmd_chat(args) -> int:
    from .serve.chat import ChatSession

    rag = None
    if args.rag:  # opened before the model loads: a wrong path fails in milliseconds
        from .rag.retrieve import open_index

        rag = open_index(args.rag)
    session = ChatSession.open(run=args.run, model=args.model or "embedded", system=args.system,
                               max_new_tokens=args.max_new_tokens, adapter=args.adapter)
    session.rag, session.rag_k = rag, args.rag_k
    if args.message is not None:
        print(session.ask(args.message, stream=False))
        print_sources(session)
        return 0
    print(f"chatting with {session.label}; /reset clears the conversation, /exit or Ctrl-D quits")
    if session.system:
        print(f"system: {session.system}")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            session.reset()
            continue
        if line:
            print("assistant> ", end="", flush=True)
            session.ask(line, stream=True)
            print_sources(session)


def print_sources(session) -> None:
    if session.rag is not None:
        from .rag.retrieve import format_sources

        print("sources:\n" + format_sources(session.last_sources))


if __name__ == "__main__":
    sys.exit(main())
