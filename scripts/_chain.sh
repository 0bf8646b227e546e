#!/usr/bin/env bash
# Shared by the recipe scripts (ccks2019_best.sh, ccks2019_distilled.sh, ccks2019_gold10_distilled.sh), sourced after
# _bootstrap.sh:
#   chain_start NAME OUT "$@"   refuse options the script sets itself, and a rerun into OUT with another recipe
#   train CONFIG OUTPUT_DIR [KEY=VALUE ...]
#                               one `medner finetune`; a run directory already there is resumed (a finished one
#                               trains nothing), so an interrupted chain continues from its last checkpoint
#   distil STUDENT_DIR TEACHER_DIR ... -- [OPTION ...]
#                               one `medner distill` with those options; an interrupted student is resumed, a
#                               finished one is kept
# EXTRA holds the caller's options (--set key=value ...), given to every training step. A script with a choice of
# recipe besides SEEDS sets RECIPE_VARS after sourcing this file (e.g. RECIPE_VARS="ENCODER=$ENCODER").
RECIPE_VARS=""

chain_start() {
  local name="$1" out="$2"
  shift 2
  EXTRA=("$@")
  for arg in "$@"; do
    case "$arg" in
      seed=*|output_dir=*|init_from=*|--overwrite|--resume)
        echo "$name: $arg is set by the script (seeds: SEEDS=\"13 29 7\", output: OUT=DIR; reruns resume)" >&2
        exit 2 ;;
    esac
  done
  # a rerun must be the same recipe: finished steps are kept, so other options would mix recipes
  local recipe="SEEDS=$SEEDS${RECIPE_VARS:+ $RECIPE_VARS}"
  for arg in "$@"; do
    case "$arg" in --no-progress|-q|-v) ;; *) recipe="$recipe $arg" ;; esac  # output options are not the recipe
  done
  mkdir -p "$out"
  if [ -f "$out/recipe.txt" ] && [ "$(cat "$out/recipe.txt")" != "$recipe" ]; then
    echo "$name: $out was made by another recipe ($(cat "$out/recipe.txt")); use another OUT=DIR or delete it" >&2
    exit 2
  fi
  echo "$recipe" > "$out/recipe.txt"
}

train() {
  local config="$1" out="$2"
  shift 2
  local args=(--set "output_dir=$out")
  for kv in "$@"; do args+=(--set "$kv"); done
  [ -d "$out" ] && [ -n "$(ls -A "$out")" ] && args+=(--resume)
  medner finetune "$config" "${args[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
}

distil() {
  local out="$1"
  shift
  local args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
  [ $# -gt 0 ] && shift  # the --
  [ -f "$out/medner_model.json" ] && return 0
  args+=(-o "$out" "$@")
  [ -n "$(ls -A "$out" 2>/dev/null)" ] && args+=(--resume)
  medner distill "${args[@]}"
}
