#!/usr/bin/env bash
# The main job end to end on the shipped example data: check the data, fine-tune with LoRA, evaluate
# base vs fine-tuned on held-out data, ask it something.
#     bash scripts/quickstart.sh                    # Yunshan Cycles (English), the embedded SmolLM2
#     bash scripts/quickstart.sh --example hefeng   # 禾豐搬家 Hefeng Moving (Traditional Chinese)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/example_option.sh
case "$example" in
    yunshan) question="What's the monthly fee for the Commuter plan?" ;;
    hefeng) question="請問 5 噸貨車搬一趟多少錢？" ;;
esac
started=$SECONDS
bash scripts/setup.sh
buxiban=.venv/bin/buxiban
data=examples/$example
run=runs/$example-lora

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

model=$(sed -n 's/^model: *//p' $data/lora.yaml)
step "1/4 check the data: buxiban data check $data/train.jsonl --model $model"
# counted with the model the example trains (Gemma 3 spends 0.79 tokens per Chinese character, SmolLM2 1.86)
$buxiban data check $data/train.jsonl --model "$model"
step "2/4 fine-tune with LoRA: buxiban train $data/lora.yaml"
$buxiban train $data/lora.yaml output_dir=$run --overwrite
step "3/4 base vs fine-tuned on the held-out test set: buxiban eval $run --test $data/test.jsonl"
$buxiban eval $run --test $data/test.jsonl
step "4/4 ask it: buxiban chat --run $run -m \"$question\""
# the assistant's system prompt, not the ticket router's (the example trains both)
system=$(.venv/bin/python -c "import sys; sys.path.insert(0, '$data'); import facts; print(facts.ASSISTANT_SYSTEM)")
base=$(.venv/bin/python -c 'import json;print(json.load(open("'$run'/buxiban-run.json"))["base_model"]["spec"])')
# a base model without chat training repeats itself until the token limit (256 by default, 40 s for Gemma 3 on 2
# cores); 64 tokens show that as well
echo "base model:  $($buxiban chat --model "$base" -m "$question" --system "$system" --max-new-tokens 64)"
echo "fine-tuned:  $($buxiban chat --run $run -m "$question" --system "$system")"
printf '\nquickstart finished in %d min %d s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60))
