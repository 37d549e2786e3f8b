"""Export a trained run for other servers.

- hf:   a merged Hugging Face directory (merge.py): transformers, vLLM, TGI; every training method.
- peft: the LoRA adapter directory as vLLM's `--lora-modules name=path` loads it, next to a shared
        base model; LoRA only (vLLM serves LoRA adapters, not DoRA, whole models or trained blocks).
- gguf: one GGUF file of the merged model (gguf_export.py): llama.cpp, Ollama; the architectures in
        gguf_export.LAYOUTS.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import AdapterError
from ..runs import write_json_atomic
from .gguf_export import GGUF_TYPES, check_architecture, write_gguf
from .merge import (
    EXPORT_RECORD,
    RunRef,
    base_config,
    export_record,
    merged_model,
    prepare_output,
    publish_directory,
    write_merged,
)

FORMATS = ("hf", "peft", "gguf")
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export(
    ref: RunRef, fmt: str, out: str | Path, gguf_type: str = "f16", dtype: str = "auto", overwrite: bool = False
) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise AdapterError(f"--format '{fmt}' is not one of {', '.join(FORMATS)}")
    if fmt == "hf":
        return write_merged(ref, out, dtype=dtype, overwrite=overwrite)
    if fmt == "peft":
        return export_peft(ref, out, overwrite=overwrite)
    return export_gguf(ref, out, gguf_type=gguf_type, overwrite=overwrite)


def served_base(ref: RunRef) -> str:
    """What vLLM should load as the base: the hub ID for hub models, else the local directory the
    run was trained on (for the embedded model, its converted safetensors copy, which is exactly
    the weights the adapter was trained against, not the hub's unquantized original)."""
    base = ref.manifest.base_model
    return base.spec if base.kind == "hub" else base.path or base.spec


def check_peft_exportable(ref: RunRef) -> None:
    if ref.weights != "adapter" or ref.adapter == "dora":
        kind = {"model": "a whole fine-tuned model", "trained.safetensors": "trained blocks (freeze)"}.get(
            ref.weights, "a DoRA adapter"
        )
        raise AdapterError(
            f"{ref.run_dir} holds {kind}, and vLLM's --lora-modules serves LoRA adapters only; "
            "export a merged model instead: --format hf (vLLM serves that as its own model)"
        )
    config = json.loads((ref.run_dir / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora"):
        raise AdapterError(f"{ref.run_dir} holds a DoRA adapter, which vLLM does not serve; use --format hf")


def export_peft(ref: RunRef, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    out = Path(out).expanduser().resolve()
    check_peft_exportable(ref)
    prepare_output(out, overwrite)
    source = ref.run_dir / "adapter"
    missing = [name for name in PEFT_FILES if not (source / name).is_file()]
    if missing:
        raise AdapterError(f"{source} lacks {', '.join(missing)}; the run's adapter is incomplete, train it again")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        shutil.copy2(source / "adapter_model.safetensors", staging / "adapter_model.safetensors")
        config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = served_base(ref)
        config["inference_mode"] = True
        write_json_atomic(staging / "adapter_config.json", config)
        record = export_record(ref, "peft", served_base=config["base_model_name_or_path"])
        write_json_atomic(staging / EXPORT_RECORD, record)
        publish_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**record, "out": str(out)}


def export_gguf(ref: RunRef, out: str | Path, gguf_type: str = "f16", overwrite: bool = False) -> dict[str, Any]:
    out = Path(out).expanduser().resolve()
    if gguf_type not in GGUF_TYPES:
        raise AdapterError(f"--gguf-type '{gguf_type}' is not one of {', '.join(GGUF_TYPES)}")
    if out.suffix != ".gguf":
        raise AdapterError(f"--out {out} should be a file name ending in .gguf")
    if out.is_dir():
        raise AdapterError(f"--out {out} is a directory; give the .gguf file name to write")
    check_architecture(base_config(ref).get("model_type", "llama"))  # before the minutes a large merge takes
    prepare_output(out, overwrite)
    model, tokenizer = merged_model(ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    checked = write_gguf(model, tokenizer, out, tensor_type=gguf_type, name=ref.label)
    return {**export_record(ref, "gguf", gguf_type=gguf_type), **checked, "out": str(out)}
