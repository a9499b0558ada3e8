#!/usr/bin/env bash
# The pre-registered faithfulness study of docs/faithfulness.md, end to end:
#   scripts/faithfulness/run_study.sh OUT_DIR [RUNS]
# RUNS (default: all) filters the base runs by a substring of their name, e.g. "default-s0".
# GAMES=retrain runs the retrain-mode addendum's games instead of the study's (see the
# addendum in docs/faithfulness.md), on the base runs RUNS selects.
# Writes OUT_DIR/<world>/…, one directory per base run with one ablation-<variant>.json per
# game variant; scripts/faithfulness/summarise.py OUT_DIR pools them. Needs the release
# binaries (`cargo build --release -p hint-coordinator`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=$(realpath -m "${1:?usage: run_study.sh OUT_DIR [RUNS]}")
FILTER=${2:-}
HINT=${HINT:-$PWD/target/release/hint}
export OMP_WAIT_POLICY=passive HINT_DEVICE=${HINT_DEVICE:-cpu}
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/study.log"; }

# Game variants of Φ (quality, replacement, and mode when not fixed), computed on each base
# run's classifiers.
if [[ ${GAMES:-study} == retrain ]]; then
  VARIANTS=(
    "log_likelihood marginal"
    "log_likelihood marginal retrain"
    "prediction zero retrain"
  )
else
VARIANTS=(
  "log_likelihood marginal"
  "prediction marginal"
  "prediction zero"
  "prediction mean"
  "logit marginal"
  "logit zero"
  "prediction_all zero"
  "log_likelihood zero"
)
fi

world() { # name, synth flags
  local name=$1; shift
  local dir=$OUT/$name
  if [[ ! -f $dir/world/world.json ]]; then
    log "world $name: $*"
    "$HINT" synth --out "$dir/world" --seed 0 --per-class 200 "$@" --overwrite >/dev/null
    "$HINT" synth --out "$dir/held-out" --seed 0 --first-index 200 --per-class 25 "$@" --overwrite >/dev/null
  fi
}

model() { # world, seed
  local dir=$OUT/$1
  if [[ ! -f $dir/tiny_cnn-s$2.safetensors ]]; then
    log "train $1 seed $2"
    "$HINT" train-model --images "$dir/world/images" --out "$dir/tiny_cnn-s$2.safetensors" \
      --seed "$2" > "$dir/train-s$2.log"
  fi
}

base_run() { # world, seed, layer, method, negatives
  local w=$1 s=$2 layer=$3 method=$4 negatives=$5
  local name="$w-s$s-$layer-$method-$negatives"
  [[ -z $FILTER || $name == *$FILTER* ]] || return 0
  local dir=$OUT/$w/runs/$name
  [[ -f $dir/done${GAMES:+-$GAMES} ]] && return 0
  mkdir -p "$dir"
  cat > "$dir/job.toml" <<EOF
[job]
name = "$name"
seed = $s

[model]
architecture = "tiny_cnn"
weights = "$OUT/$w/tiny_cnn-s$s.safetensors"
layer = "$layer"

[data]
images = "$OUT/$w/world/images"
hierarchy = "$OUT/$w/world/hierarchy.yaml"

[extract]
method = "$method"
background_ratio = 0.25
images_per_task = 800

[classify]
concepts_per_task = 15
negatives = "$negatives"

[shapley]
permutations = 64
permutations_per_task = 64

[storage]
root = "$dir/runs"
EOF
  if [[ ! -f $dir/runs/job-0001/results/phi.csv ]]; then
    log "run $name"
    rm -rf "$dir/runs"
    "$HINT" run "$dir/job.toml" --workers 1 > "$dir/run.log" 2>&1
  fi
  local job=$dir/runs/job-0001
  local variants=("${VARIANTS[@]}")
  # The negative-set runs compare the default game and the paper's value only (in fixed
  # mode, and in retrain mode for the second retrain addendum).
  if [[ $negatives != mixed ]]; then
    variants=("log_likelihood marginal" "prediction zero")
    [[ ${GAMES:-study} == retrain ]] && variants+=(
      "log_likelihood marginal retrain" "prediction zero retrain")
  fi
  for v in "${variants[@]}"; do
    read -r quality replacement mode <<<"$v"
    mode=${mode:-fixed}
    local tag=$quality-$replacement
    [[ $mode == fixed ]] || tag=$mode-$tag
    [[ -f $dir/ablation-$tag.json ]] && continue
    log "  $name: $tag"
    "$HINT" shapley --classifiers "$job/classifiers/train-00000" --permutations 64 \
      --quality "$quality" --replacement "$replacement" --mode "$mode" --seed "$s" \
      --out "$dir/phi-$tag" --overwrite > "$dir/shapley-$tag.log" 2>&1
    # Mean removal (secondary) for the default game and the paper's value only; 200
    # replicates (the per-run intervals are not pooled): see "Deviations".
    local removals=zero
    [[ $tag == log_likelihood-marginal || $tag == prediction-zero ]] && removals=zero,mean
    "$HINT" ablate --job "$job" --images "$OUT/$w/held-out/images" --phi "$dir/phi-$tag/phi.csv" \
      --out "$dir/ablation-$tag.json" --fractions 2,5,10,20,40 --removals "$removals" \
      --bootstrap 200 > "$dir/ablate-$tag.log" 2>&1
  done
  touch "$dir/done${GAMES:+-$GAMES}"
}

world default
world hard --preset hard
# Seed-major, worlds interleaved, negative sets last: a run cut short by time keeps the
# worlds balanced and loses whole seeds.
for s in 0 1 2; do
  for w in default hard; do
    model "$w" "$s"
    for layer in features.7; do
      for method in gradient_x_activation integrated_gradients; do
        base_run "$w" "$s" "$layer" "$method" mixed
      done
    done
  done
done
for s in 0 1 2; do
  for w in default hard; do
    for negatives in background siblings; do
      base_run "$w" "$s" features.7 gradient_x_activation "$negatives"
    done
  done
done
log "done"
