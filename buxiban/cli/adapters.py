"""`buxiban adapters ...`: name trained runs, inspect them, merge them and export them for other
servers. Errors travel up as exceptions to cli.main."""

from __future__ import annotations

import dataclasses
import json

EXPORT_FORMATS = ("hf", "peft", "gguf")


def add_adapter_commands(commands) -> None:
    adapters = commands.add_parser(
        "adapters", help="name trained runs; merge and export them (HF, PEFT for vLLM, GGUF)"
    )
    sub = adapters.add_subparsers(title="adapters commands", metavar="COMMAND")

    listing = sub.add_parser("list", help="every registered adapter: base model, method, weights, run dir, status")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="base model identity, config, data hashes, final metrics and eval scores")
    show.add_argument("adapter", metavar="NAME_OR_RUN", help="a registered name or a run directory")
    show.add_argument("--json", action="store_true", help="print everything as JSON")
    show.set_defaults(handler=cmd_show)

    add = sub.add_parser("add", help="register a finished `buxiban train` run under a name")
    add.add_argument("name", help="letters, digits, '.', '_', ':' or '-'")
    add.add_argument("run", help="the run directory (output_dir of `buxiban train`)")
    add.add_argument("--replace", action="store_true", help="point an existing name at this run instead")
    add.set_defaults(handler=cmd_add)

    remove = sub.add_parser("rm", help="forget a name (the run's files stay unless --delete-files)")
    remove.add_argument("name")
    remove.add_argument(
        "--delete-files", action="store_true", help="also delete the run directory (only ever a buxiban run directory)"
    )
    remove.set_defaults(handler=cmd_rm)

    merge = sub.add_parser(
        "merge", help="a merged Hugging Face model directory (safetensors) for transformers and vLLM"
    )
    merge.add_argument("adapter", metavar="NAME_OR_RUN", help="a registered name or a run directory")
    merge.add_argument("--out", required=True, help="directory to write")
    _output_arguments(merge)
    merge.set_defaults(handler=cmd_merge)

    export = sub.add_parser("export", help="export for other servers: merged HF dir, PEFT dir for vLLM, or GGUF")
    export.add_argument("adapter", metavar="NAME_OR_RUN", help="a registered name or a run directory")
    export.add_argument(
        "--format",
        required=True,
        choices=EXPORT_FORMATS,
        dest="fmt",
        help="hf: merged model dir; peft: LoRA dir for vLLM --lora-modules; gguf: one file for llama.cpp",
    )
    export.add_argument("--out", required=True, help="directory (hf, peft) or .gguf file to write")
    export.add_argument(
        "--gguf-type",
        choices=("f32", "f16", "bf16"),
        default="f16",
        help="GGUF tensor type (default f16; norms stay f32)",
    )
    _output_arguments(export)
    export.set_defaults(handler=cmd_export)


def _output_arguments(parser) -> None:
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "float16", "bfloat16"),
        default="auto",
        help="dtype of the merged model's weights (merge and --format hf; default auto: the base model's own dtype)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export at --out")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a run whose model needs its repository's code (never taken from the run directory)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def cmd_list(args) -> int:
    from ..adapters.registry import Registry

    entries = Registry().list()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print("no adapters registered; add one with: buxiban adapters add NAME RUN_DIR")
        return 0
    rows = [["NAME", "BASE MODEL", "METHOD", "WEIGHTS", "RUN DIR", "STATUS"]]
    rows += [[e.name, e.base_model, e.method, e.weights, str(e.run_dir), e.manifest.status] for e in entries]
    print(_table(rows))
    return 0


def cmd_show(args) -> int:
    from ..adapters.inventory import describe
    from ..adapters.merge import resolve_run

    info = describe(resolve_run(args.adapter, require_complete=False))
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    base = info["base_model"]
    lines = [
        f"name:        {info['name'] or '(not registered)'}",
        f"run dir:     {info['run_dir']}",
        f"status:      {info['status']} (created {info['created']}, finished {info['finished']})",
        f"method:      {info['method']}/{info['adapter']}, weights in {info['weights']}",
        f"base model:  {base.get('name')} ({base.get('kind')}: {base.get('spec')})",
        f"             fingerprint {base.get('fingerprint')}",
    ]
    if info["parameters"]:
        lines.append(
            f"parameters:  {info['parameters'].get('trainable'):,} trained of {info['parameters'].get('total'):,}"
        )
    lines.append("config:")
    lines += [f"  {key}: {value}" for key, value in info["config"].items()]
    lines.append("data hashes:")
    lines += [f"  {key}: {value}" for key, value in info["data_hashes"].items()]
    lines.append("final metrics:")
    lines += [f"  {key}: {value}" for key, value in info["metrics"].items() if value is not None]
    if info["eval"]:
        lines.append("eval (RUN/eval/eval.json):")
        for system, scores in info["eval"].items():
            numbers = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())
            lines.append(f"  {system}: {numbers}")
    else:
        lines.append("eval: none yet (run: buxiban eval RUN --test test.jsonl)")
    print("\n".join(lines))
    return 0


def cmd_add(args) -> int:
    from ..adapters.registry import Registry

    entry = Registry().register(args.name, args.run, replace=args.replace)
    print(f"registered {entry.name} -> {entry.run_dir} ({entry.method}, base {entry.base_model})")
    return 0


def cmd_rm(args) -> int:
    from ..adapters.inventory import remove
    from ..adapters.registry import Registry

    entry, deleted = remove(Registry(), args.name, delete_files=args.delete_files)
    kept = f"deleted {entry.run_dir}" if deleted else f"its files stay in {entry.run_dir}"
    print(f"removed {entry.name}; {kept}")
    return 0


def cmd_merge(args) -> int:
    args.fmt, args.gguf_type = "hf", "f16"
    return cmd_export(args)


def cmd_export(args) -> int:
    from ..adapters.export import export
    from ..adapters.merge import resolve_run

    ref = dataclasses.replace(resolve_run(args.adapter), trust_remote_code=args.trust_remote_code)
    result = export(ref, args.fmt, args.out, gguf_type=args.gguf_type, dtype=args.dtype, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    out = result["out"]
    if args.fmt == "hf":
        print(
            f"merged model ({result['dtype']}) written to {out}\n"
            f"  load it with AutoModelForCausalLM.from_pretrained('{out}'), or serve it: vllm serve {out}"
        )
    elif args.fmt == "peft":
        print(
            f"LoRA adapter written to {out} (base: {result['served_base']})\n"
            f"  serve it: vllm serve {result['served_base']} --enable-lora --lora-modules {ref.label}={out}"
        )
    else:
        print(
            f"GGUF ({args.gguf_type}, {result['tensors']} tensors, {result['bytes'] / 1e6:.1f} MB) written to {out}\n"
            f"  run it: llama-cli -m {out}   or in Ollama: a Modelfile with FROM {out}"
        )
    return 0
