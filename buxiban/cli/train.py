"""`buxiban train`: fine-tune from a YAML config."""

from __future__ import annotations


def add_train_commands(commands) -> None:
    train = commands.add_parser("train", help="fine-tune from a YAML config plus key=value overrides")
    train.add_argument("config", help="YAML run config (see examples/yunshan/lora.yaml)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.epochs=2 lora.r=8")
    train.add_argument("--overwrite", action="store_true", help="replace an earlier run in output_dir")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="auto|CHECKPOINT",
        help="continue from the newest complete checkpoint in output_dir (or the one given)",
    )
    train.add_argument("--force", action="store_true", help="resume even though the config, data or base model changed")
    train.set_defaults(handler=cmd_train)


def cmd_train(args) -> int:
    from ..config import load_config
    from ..runs import read_manifest

    config = load_config(args.config, args.overrides)  # every config problem surfaces here, before any model loads
    if config.method == "dpo":
        from ..train.dpo import train_dpo as train
    else:
        from ..train.sft import train_sft as train

    result = train(config, overwrite=args.overwrite, progress=not args.quiet, resume=args.resume, force=args.force)
    val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    print(
        f"trained {result.steps} steps in {result.seconds / 60:.1f} min ({result.tokens_per_second:.0f} tokens/s): "
        f"final training loss {result.train_loss:.4f}{val}"
    )
    if result.utilization:
        u = result.utilization
        print(
            f"model FLOPs utilization {u['mfu']:.1%}: {u['achieved_tflops']:.3f} TFLOP/s achieved "
            f"({u['flops_per_token']:,} FLOPs per token) of {u['peak_tflops']:.3f} measured peak ({u['peak_from']})"
        )
    weights = read_manifest(result.run_dir).weights
    print(f"run saved to {result.run_dir} (trained weights in {result.run_dir / weights})")
    return 0
