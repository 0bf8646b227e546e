#!/usr/bin/env bash
# The best measured one-model recipe on CCKS 2019, end to end (configs/ccks2019_best.yaml says what and why):
#   1. weak pre-training on the 900 training texts (configs/ccks2019_weak.yaml, no gold)   ~20 min on 2 CPU cores
#   2. three gold fine-tunings from it, seeds $SEEDS (configs/ccks2019_best.yaml)          ~1 h each
#   3. their weight average, one model: runs/ccks2019_best/soup                             < 1 min
#   4. its dev score (strict micro-F1 on the last 100 records of part 2)
# Run it again after an interruption: every step continues from its last checkpoint (finished steps train nothing).
#   scripts/ccks2019_best.sh [--set key=value ...]      (the --set options go to every training step)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
cd "$ROOT"
OUT="${OUT:-runs/ccks2019_best}"
SEEDS="${SEEDS:-13 29 7}"

source "$ROOT/scripts/_chain.sh"
chain_start ccks2019_best "$OUT" "$@"
train configs/ccks2019_weak.yaml "$OUT/weak"
members=()
for seed in $SEEDS; do
  train configs/ccks2019_best.yaml "$OUT/gold_$seed" "init_from=$OUT/weak" "seed=$seed"
  members+=("$OUT/gold_$seed")
done
if [ -f "$OUT/soup/medner_model.json" ]; then
  echo "ccks2019_best: $OUT/soup exists (delete it to average the members again)" >&2
else
  medner soup "${members[@]}" -o "$OUT/soup"
fi
python scripts/bench/bench_dev.py "$OUT/soup"
