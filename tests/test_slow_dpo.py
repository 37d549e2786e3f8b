"""SFT then DPO on the real embedded model and the shipped data: the preference margin rises and the
held-out exact-match score does not fall. About 11 minutes on 2 CPU cores."""

import json
from pathlib import Path

import pytest

from buxiban.config import load_config
from buxiban.data.records import load_chat_jsonl
from buxiban.eval.compare import split_prompt
from buxiban.eval.metrics import exact_match
from buxiban.models.generate import generate_answers
from buxiban.runs import read_metrics
from buxiban.runs.load import load_trained
from buxiban.train.dpo import train_dpo
from buxiban.train.sft import train_sft

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "yunshan"
# long: about 11 minutes of CI's 30 (SFT to convergence, DPO, two evaluations); `bash scripts/test.sh -m long`
pytestmark = [pytest.mark.slow, pytest.mark.long]


def exact_match_rate(run_dir) -> float:
    model, tokenizer, _ = load_trained(run_dir)
    prompts, references = zip(*(split_prompt(c.messages) for c in load_chat_jsonl(EXAMPLES / "test.jsonl")))
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=48, batch_size=20)
    return sum(exact_match(a, r) for a, r in zip(answers, references)) / len(references)


def test_dpo_after_sft_raises_the_margin_and_keeps_exact_match(tmp_path):
    """The README's path as shipped: lora.yaml to the end (148 steps), then dpo.yaml on its adapter.
    After only 45 SFT steps (exact match 0.342) DPO lost two answers on neighbouring phrasings of facts
    the pairs cover (README, DPO section), so a half-trained SFT run does not stand in for this one."""
    sft, dpo = tmp_path / "sft", tmp_path / "dpo"
    train_sft(load_config(EXAMPLES / "lora.yaml", [f"output_dir={sft}"]), progress=False, log=lambda _: None)
    before = exact_match_rate(sft)
    assert before > 0.8
    train_dpo(
        load_config(EXAMPLES / "dpo.yaml", [f"output_dir={dpo}", f"dpo.from_run={sft}"]),
        progress=False,
        log=lambda _: None,
    )
    validation = [m for m in read_metrics(dpo) if "val_margin" in m]
    assert validation and validation[-1]["val_margin"] > 0.5  # 0 before the first step, by construction
    after = exact_match_rate(dpo)
    assert after >= before, json.dumps({"sft": before, "dpo": after})
