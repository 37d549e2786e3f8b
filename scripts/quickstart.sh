#!/usr/bin/env bash
# The main job end to end on the embedded model and the shipped example data:
# check the data, fine-tune with LoRA, evaluate base vs fine-tuned on held-out data, ask it something.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
bash scripts/setup.sh
buxiban=.venv/bin/buxiban
run=runs/yunshan-lora

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/4 check the data: buxiban data check examples/yunshan/train.jsonl"
$buxiban data check examples/yunshan/train.jsonl
step "2/4 fine-tune with LoRA: buxiban train examples/yunshan/lora.yaml"
$buxiban train examples/yunshan/lora.yaml output_dir=$run --overwrite
step "3/4 base vs fine-tuned on the held-out test set: buxiban eval $run --test examples/yunshan/test.jsonl"
$buxiban eval $run --test examples/yunshan/test.jsonl
question="What's the monthly fee for the Commuter plan?"
step "4/4 ask it: buxiban chat --run $run -m \"$question\""
echo "base model:  $($buxiban chat -m "$question" --system "$(.venv/bin/python -c 'import json;print(json.load(open("'$run'/buxiban-run.json"))["default_system_prompt"])')")"
echo "fine-tuned:  $($buxiban chat --run $run -m "$question")"
printf '\nquickstart finished in %d min %d s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60))
