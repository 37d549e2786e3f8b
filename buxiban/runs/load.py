"""A finished run, loaded: the base model with the run's trained weights on top."""

from __future__ import annotations

from pathlib import Path

from ..errors import RunDirError
from ..models.templates import AUTO, ChosenTemplate
from .manifest import read_manifest


def load_trained(run_dir: str | Path):
    """Base model with the run's adapter attached, its tokenizer, and the manifest."""
    from peft import PeftModel

    from ..models.load import load

    manifest = read_manifest(run_dir)
    if not manifest.complete:
        raise RunDirError(f"{run_dir} did not finish training (status: {manifest.status}); train it again")
    base_spec, trust, weights = manifest.base_model.spec, manifest.trust_remote_code, manifest.weights
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
