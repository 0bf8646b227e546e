#!/usr/bin/env bash
# CCKS 2019 with 10% of its gold: one student distilled from three 10%-gold runs of one gold share, end to end
# (README "Getting the most accuracy", BENCHMARKS.md "Stop 20" and "Stop 21"):
#   1. weak pre-training on the 900 training texts (configs/ccks2019_weak.yaml, no gold, seed 13)   ~22 min on 2 CPU cores
#   2. for each seed in $SEEDS, three runs on that seed's 10% of the gold (configs/ccks2019_gold10.yaml, 90 records)
#      from the weak run: with FGM (epsilon 1.0), with R-Drop (alpha 1.0), with neither             ~15 + 17 + 10 min
#   3. their student (`medner distill`, 5 epochs, starting from the FGM run): the same 90 gold records, the other
#      810 training texts and 1,198 unlabelled CCKS 2017 EMRs with the teachers' soft targets only      ~75 min
#   4. its dev score (strict micro-F1 on the last 100 records of part 2)
# Run it again after an interruption: every step continues from its last checkpoint (finished steps train nothing).
#   scripts/ccks2019_gold10_distilled.sh [--set key=value ...]   (the --set options go to every fine-tuning)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
cd "$ROOT"
OUT="${OUT:-runs/ccks2019_gold10_distilled}"
SEEDS="${SEEDS:-13 7}"
UNLABELLED="${UNLABELLED:-../shared/data/corpora/ccks2017_cner/data_origin.zip}"

source "$ROOT/scripts/_chain.sh"
chain_start ccks2019_gold10_distilled "$OUT" "$@"
train configs/ccks2019_weak.yaml "$OUT/weak"
for seed in $SEEDS; do
  runs="$OUT/seed_$seed"
  train configs/ccks2019_gold10.yaml "$runs/fgm" "init_from=$OUT/weak" "seed=$seed" train.fgm_epsilon=1.0
  train configs/ccks2019_gold10.yaml "$runs/rdrop" "init_from=$OUT/weak" "seed=$seed" train.rdrop_alpha=1.0
  train configs/ccks2019_gold10.yaml "$runs/plain" "init_from=$OUT/weak" "seed=$seed"
  distil "$runs/student" "$runs/fgm" "$runs/rdrop" "$runs/plain" -- --unlabelled "$UNLABELLED" \
    --unlabelled-format ccks2017 --set train.epochs=5 --set train.lr_head=1e-3 --set train.fgm_epsilon=0
  python scripts/bench/bench_dev.py "$runs/student"
done
