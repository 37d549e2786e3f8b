"""A finished run, loaded: the base model with the run's trained weights on top."""

from __future__ import annotations

from pathlib import Path

from ..errors import RunDirError
from ..models.templates import ALIASES, AUTO, FAMILIES, ChosenTemplate, choose_template
from .manifest import read_manifest


def load_trained(run_dir: str | Path, template: str | None = AUTO, trust_remote_code: bool = False):
    """Base model with the run's adapter attached, its tokenizer, and the manifest. `template` is what
    the user asked for on the command line: only the run's own (or `auto`) is accepted.
    `trust_remote_code` comes from the command being run, never from the run directory: a run
    someone else wrote must not be able to make buxiban execute a model repository's code."""
    from peft import PeftModel

    from ..models.load import load

    manifest = read_manifest(run_dir)
    if not manifest.complete:
        raise RunDirError(f"{run_dir} did not finish training (status: {manifest.status}); train it again")
    check_template_request(manifest, run_dir, template)
    base_spec, weights = manifest.base_model.spec, manifest.weights
    check_remote_code(manifest, run_dir, trust_remote_code)
    trust = trust_remote_code
    template = _trained_template(manifest)
    if weights == "model":  # full fine-tuning: the run holds a whole model directory
        model, tokenizer, _ = load(str(Path(run_dir) / "model"), trust, template)
        return model, tokenizer, manifest
    model, tokenizer, source = load(base_spec, trust, template)
    if source.fingerprint != manifest.base_model.fingerprint:
        raise RunDirError(
            f"the base model '{base_spec}' on this machine differs from the one {run_dir} was trained on "
            f"({source.fingerprint[:19]}… vs {manifest.base_model.fingerprint[:19]}…)"
        )
    if weights == "adapter":
        model = PeftModel.from_pretrained(model, str(Path(run_dir) / "adapter"))
    else:  # freeze: the trained blocks on top of the base
        from safetensors.torch import load_file

        from ..models.adapt import load_trainable_state

        load_trainable_state(model, load_file(str(Path(run_dir) / weights)))
    model.eval()
    return model, tokenizer, manifest


def _trained_template(manifest) -> ChosenTemplate | str:
    """The template the run trained with: what training rendered, eval, chat, serve and merge render.
    Runs from before templates were recorded used the model's own (`auto`)."""
    record = manifest.template
    if not record or not isinstance(record.get("text"), str):
        return AUTO
    return ChosenTemplate(record["text"], str(record.get("name", "run")), str(record.get("origin", "model")))


def check_template_request(manifest, run_dir: str | Path, requested: str | None) -> None:
    """A run renders what it trained with: a model served another format than the one it learned
    answers worse without a word, so a --template that renders differently is refused before loading."""
    if not requested or requested.strip() == AUTO:
        return
    name = ALIASES.get(requested.strip().lower(), requested.strip().lower())
    text = FAMILIES[name].template if name in FAMILIES else choose_template(None, requested).text
    trained = _trained_template(manifest)
    if isinstance(trained, ChosenTemplate) and trained.text == text:
        return
    trained_name = f"'{trained.name}' ({trained.origin})" if isinstance(trained, ChosenTemplate) else "the model's own"
    raise RunDirError(
        f"{run_dir} was trained with the chat template {trained_name}, and --template {requested} renders "
        "differently; leave --template out (the run's own is used), or train again with "
        f"template: {requested}"
    )


def check_remote_code(manifest, run_dir: str | Path, trusted: bool) -> None:
    if manifest.trust_remote_code and not trusted:
        raise RunDirError(
            f"{run_dir} was trained on '{manifest.base_model.spec}' with trust_remote_code, which runs code "
            "from the model's repository; pass --trust-remote-code to this command if you trust that model"
        )
