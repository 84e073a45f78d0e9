#!/usr/bin/env bash
# Train small factorized-prior codecs: by default those of the codec-training issue, MSE and
# 0.5 MSE + 0.5 ML-CLIPSim, four lambdas each (LAMBDAS), equal steps (STEPS) and data: the shared photos minus the held-out photos of
# benchmarks/results/heldout_photos.txt (the dataset's test split, on which the rate-task study scores
# the codecs), with the recipes' own train/validation split and seed.
# Two chains run side by side, one CPU thread each; every run writes runs/<recipe>/lambda_<l>/ and is
# exported to benchmarks/results/codecs/small/<recipe>_<l>.pth (a plain CompressAI state dict).
# A run that finished (its .pth exists) is skipped, so re-running the script resumes.
#   STEPS=1500 bash benchmarks/codec_training/train_small.sh
# Other recipes by name (codecs/README.md; codecs/recipes.py gives each name's config files), e.g. the RA-MIQA
# recipes (the RA-MIQA issue):
#   STEPS=1500 bash benchmarks/codec_training/train_small.sh bmshj2018-factorized_mse-ra-miqa_small
#   STEPS=1500 LAMBDAS=0.0130 bash benchmarks/codec_training/train_small.sh bmshj2018-factorized_ra-miqa_small
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-1500}
PY=${PY:-.venv/bin/python}
export MLCLIPSIM_OFFLINE=1 OMP_NUM_THREADS=1
OUT=benchmarks/results/codecs/small
mkdir -p "$OUT"

train() {  # recipe lambda
  local recipe=$1 lmbda=$2 dir=runs/$1
  [ -f "$OUT/${recipe}_$lmbda.pth" ] && return 0
  local start=$(date +%s) resume=() configs
  read -r -a configs <<< "$("$PY" codecs/recipes.py "$recipe")"  # --config FILE ... (names checked below)
  [ -f "$dir/lambda_$lmbda/checkpoints/last.ckpt" ] && resume=(--ckpt_path "$dir/lambda_$lmbda/checkpoints/last.ckpt")
  "$PY" -m mlclipsim.training.train_codec "${configs[@]}" --model.lmbda "$lmbda" \
    --data.exclude benchmarks/results/heldout_photos.txt \
    --trainer.max_steps "$STEPS" --trainer.check_val_every_n_epoch 10 "${resume[@]}" \
    --trainer.logger.init_args.save_dir runs --trainer.logger.init_args.name "$recipe" \
    --trainer.logger.init_args.version "lambda_$lmbda" > "$dir.lambda_$lmbda.log" 2>&1
  "$PY" -m mlclipsim.coding.export "$dir/lambda_$lmbda/checkpoints/last.ckpt" "$OUT/${recipe}_$lmbda.pth"
  cp "$dir/lambda_$lmbda/metrics.csv" "$OUT/${recipe}_$lmbda.metrics.csv"
  echo "$recipe $lmbda $STEPS steps $(( $(date +%s) - start )) s" >> "$OUT/wall_times.txt"
}

RECIPES=("$@")
[ ${#RECIPES[@]} -gt 0 ] || RECIPES=(bmshj2018-factorized_mix_small bmshj2018-factorized_mse_small)
for recipe in "${RECIPES[@]}"; do "$PY" codecs/recipes.py "$recipe" > /dev/null; done  # unknown name: stop here
read -r -a LADDER <<< "${LAMBDAS:-0.0035 0.0067 0.0130 0.0250}"
chain() {  # every other lambda of the ladder, from index $1; each lambda for every recipe
  for ((i = $1; i < ${#LADDER[@]}; i += 2)); do
    for recipe in "${RECIPES[@]}"; do train "$recipe" "${LADDER[$i]}"; done
  done
}
mkdir -p runs
chain 0 & pids=($!)
if [ ${#LADDER[@]} -gt 1 ]; then chain 1 & pids+=($!); fi
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done  # a bare `wait` would return 0 after a failure
[ $status -eq 0 ] || echo "a training failed: see runs/<recipe>.lambda_<l>.log" >&2
exit $status
