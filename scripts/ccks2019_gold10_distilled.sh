#!/usr/bin/env bash
# CCKS 2019 with 10% of its gold: one student distilled from three 10%-gold runs of one gold share, end to end
# (README "Getting the most accuracy", BENCHMARKS.md "Stop 20" to "Stop 22"):
#   0. ENCODER=adapted only: continued masked-LM pretraining on clinical text (configs/pretrain_clinical.yaml)  ~2.2 h
#   1. weak pre-training on the 900 training texts, no gold, seed 13: ENCODER=plain (the default)
#      configs/ccks2019_weak.yaml, ~22 min on 2 CPU cores; ENCODER=adapted configs/ccks2019_multi_weak.yaml (the
#      intermediate phase on CCKS 2017 + CMeEE first), ~65 min
#   2. for each seed in $SEEDS, three runs on that seed's 10% of the gold (configs/ccks2019_gold10.yaml, 90 records)
#      from the weak run: with FGM (epsilon 1.0), with R-Drop (alpha 1.0), with neither             ~15 + 17 + 10 min
#   3. their student (`medner distill`, 5 epochs, starting from the FGM run): the same 90 gold records, the other
#      810 training texts and 1,198 unlabelled CCKS 2017 EMRs with the teachers' soft targets only      ~75 min
#   4. its dev score (strict micro-F1 on the last 100 records of part 2)
# Run it again after an interruption: every step continues from its last checkpoint (finished steps train nothing).
#   [ENCODER=adapted] scripts/ccks2019_gold10_distilled.sh [--set key=value ...]   (--set: to every fine-tuning)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
cd "$ROOT"
ENCODER="${ENCODER:-plain}"
case "$ENCODER" in
  plain) weak_config=configs/ccks2019_weak.yaml; encoder=(); default_out=runs/ccks2019_gold10_distilled ;;
  adapted) weak_config=configs/ccks2019_multi_weak.yaml; encoder=(encoder.name=runs/encoders/clinical_tapt)
           default_out=runs/ccks2019_gold10_distilled_adapted ;;
  *) echo "ccks2019_gold10_distilled: ENCODER=$ENCODER is not a recipe: use ENCODER=plain (multilingual-e5-small" \
          "as installed) or ENCODER=adapted (after clinical pretraining and the multi-corpus phase)" >&2
     exit 2 ;;
esac
OUT="${OUT:-$default_out}"
SEEDS="${SEEDS:-13 7}"
UNLABELLED="${UNLABELLED:-../shared/data/corpora/ccks2017_cner/data_origin.zip}"

source "$ROOT/scripts/_chain.sh"
[ "$ENCODER" = plain ] || RECIPE_VARS="ENCODER=$ENCODER"   # the plain recipe's record is as before ENCODER existed
chain_start ccks2019_gold10_distilled "$OUT" "$@"
if [ "$ENCODER" = adapted ]; then
  medner pretrain configs/pretrain_clinical.yaml --resume   # a finished encoder is kept; an interrupted one continues
fi
train "$weak_config" "$OUT/weak"
for seed in $SEEDS; do
  runs="$OUT/seed_$seed"
  gold=("init_from=$OUT/weak" "seed=$seed" ${encoder[@]+"${encoder[@]}"})
  train configs/ccks2019_gold10.yaml "$runs/fgm" "${gold[@]}" train.fgm_epsilon=1.0
  train configs/ccks2019_gold10.yaml "$runs/rdrop" "${gold[@]}" train.rdrop_alpha=1.0
  train configs/ccks2019_gold10.yaml "$runs/plain" "${gold[@]}"
  distil "$runs/student" "$runs/fgm" "$runs/rdrop" "$runs/plain" -- --unlabelled "$UNLABELLED" \
    --unlabelled-format ccks2017 --set train.epochs=5 --set train.lr_head=1e-3 --set train.fgm_epsilon=0
  python scripts/bench/bench_dev.py "$runs/student"
done
