#!/usr/bin/env bash
# The main job end to end on the shipped example data: check the data, fine-tune with LoRA, evaluate
# base vs fine-tuned on held-out data, ask it something.
#     bash scripts/quickstart.sh                    # Yunshan Cycles (English), the embedded SmolLM2
#     bash scripts/quickstart.sh --example hefeng   # 禾豐搬家 Hefeng Moving (Traditional Chinese)
set -euo pipefail
cd "$(dirname "$0")/.."
example=yunshan
while [ $# -gt 0 ]; do
    case "$1" in
        --example) example=${2:-}; shift 2 ;;
        --example=*) example=${1#--example=}; shift ;;
        *) echo "usage: bash scripts/quickstart.sh [--example yunshan|hefeng]" >&2; exit 2 ;;
    esac
done
case "$example" in
    yunshan) question="What's the monthly fee for the Commuter plan?" ;;
    hefeng) question="請問 5 噸貨車搬一趟多少錢？" ;;
    *) echo "error: no example '$example'; choose yunshan (English) or hefeng (Traditional Chinese)" >&2; exit 2 ;;
esac
started=$SECONDS
bash scripts/setup.sh
buxiban=.venv/bin/buxiban
data=examples/$example
run=runs/$example-lora

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/4 check the data: buxiban data check $data/train.jsonl"
$buxiban data check $data/train.jsonl
step "2/4 fine-tune with LoRA: buxiban train $data/lora.yaml"
$buxiban train $data/lora.yaml output_dir=$run --overwrite
step "3/4 base vs fine-tuned on the held-out test set: buxiban eval $run --test $data/test.jsonl"
$buxiban eval $run --test $data/test.jsonl
step "4/4 ask it: buxiban chat --run $run -m \"$question\""
# the assistant's system prompt, not the ticket router's (the example trains both)
system=$(.venv/bin/python -c "import sys; sys.path.insert(0, '$data'); import facts; print(facts.ASSISTANT_SYSTEM)")
base=$(.venv/bin/python -c 'import json;print(json.load(open("'$run'/buxiban-run.json"))["base_model"]["spec"])')
echo "base model:  $($buxiban chat --model "$base" -m "$question" --system "$system")"
echo "fine-tuned:  $($buxiban chat --run $run -m "$question" --system "$system")"
printf '\nquickstart finished in %d min %d s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60))
