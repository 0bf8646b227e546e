#!/usr/bin/env bash
# One model distilled from an output ensemble of three multi-corpus runs on CCKS 2019, end to end
# (README "Getting the most accuracy", BENCHMARKS.md "Distilling the three-seed ensemble"):
#   1. continued masked-LM pretraining on clinical text (configs/pretrain_clinical.yaml)   ~2.2 h on 2 CPU cores
#   2. configs/ccks2019_multi.yaml, seed 13: intermediate phase on CCKS 2017 + CMeEE, then CCKS 2019   ~1.8 h
#   3. the same target phase with seeds 29 and 7, after seed 13's intermediate phase (copied in)      ~1 h each
#   4. one student of the three (`medner distill`, 5 epochs, 1,198 unlabelled CCKS 2017 EMRs as extra text,
#      starting from the first seed's run): runs/ccks2019_distilled/student                             ~1.2 h
#   5. its dev score (strict micro-F1 on the last 100 records of part 2)
# Run it again after an interruption: every step continues from its last checkpoint (finished steps train nothing).
#   scripts/ccks2019_distilled.sh [--set key=value ...]   (the --set options go to the three fine-tunings)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
cd "$ROOT"
OUT="${OUT:-runs/ccks2019_distilled}"
SEEDS="${SEEDS:-13 29 7}"
UNLABELLED="${UNLABELLED:-../shared/data/corpora/ccks2017_cner/data_origin.zip}"

source "$ROOT/scripts/_chain.sh"
chain_start ccks2019_distilled "$OUT" "$@"
medner pretrain configs/pretrain_clinical.yaml --resume   # a finished encoder is kept; an interrupted one continues
teachers=()
for seed in $SEEDS; do
  run="$OUT/multi_$seed"
  if [ ${#teachers[@]} -gt 0 ] && [ ! -f "$run/phases/auxiliary/medner_model.json" ]; then
    mkdir -p "$run/phases"  # the first seed's intermediate phase, as the measured teachers had it
    rm -rf "$run/phases/auxiliary"
    cp -r "${teachers[0]}/phases/auxiliary" "$run/phases/auxiliary"
  fi
  train configs/ccks2019_multi.yaml "$run" "seed=$seed"
  teachers+=("$run")
done
# the student starts from the first teacher's config: without the regularisers a --set may have given the teachers
distil "$OUT/student" "${teachers[@]}" -- --unlabelled "$UNLABELLED" --unlabelled-format ccks2017 \
  --set train.epochs=5 --set train.lr_head=1e-3 --set train.fgm_epsilon=0 --set train.rdrop_alpha=0
python scripts/bench/bench_dev.py "$OUT/student"
