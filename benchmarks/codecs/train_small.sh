#!/usr/bin/env bash
# Train the small factorized-prior codecs of the codec-training issue: MSE and 0.5 MSE + 0.5 ML-CLIPSim,
# four lambdas each, equal steps (STEPS) and data: the shared photos minus the held-out photos of
# benchmarks/results/heldout_photos.txt (the dataset's test split, on which the rate-task study scores
# the codecs), with the recipes' own train/validation split and seed.
# Two chains run side by side, one CPU thread each; every run writes runs/<recipe>/lambda_<l>/ and is
# exported to benchmarks/results/codecs/small/<recipe>_<l>.pth (a plain CompressAI state dict).
# A run that finished (its .pth exists) is skipped, so re-running the script resumes.
#   STEPS=1500 bash benchmarks/codecs/train_small.sh
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
  local start=$(date +%s) resume=()
  [ -f "$dir/lambda_$lmbda/checkpoints/last.ckpt" ] && resume=(--ckpt_path "$dir/lambda_$lmbda/checkpoints/last.ckpt")
  "$PY" -m mlclipsim.compression.train --config "codecs/$recipe.yaml" --model.lmbda "$lmbda" \
    --data.exclude benchmarks/results/heldout_photos.txt \
    --trainer.max_steps "$STEPS" --trainer.check_val_every_n_epoch 10 "${resume[@]}" \
    --trainer.logger.init_args.save_dir runs --trainer.logger.init_args.name "$recipe" \
    --trainer.logger.init_args.version "lambda_$lmbda" > "$dir.lambda_$lmbda.log" 2>&1
  "$PY" -m mlclipsim.compression.export "$dir/lambda_$lmbda/checkpoints/last.ckpt" "$OUT/${recipe}_$lmbda.pth"
  cp "$dir/lambda_$lmbda/metrics.csv" "$OUT/${recipe}_$lmbda.metrics.csv"
  echo "$recipe $lmbda $STEPS steps $(( $(date +%s) - start )) s" >> "$OUT/wall_times.txt"
}

mkdir -p runs
( for l in 0.0035 0.0130; do train bmshj2018-factorized_mix_small $l; train bmshj2018-factorized_mse_small $l; done ) &
( for l in 0.0067 0.0250; do train bmshj2018-factorized_mix_small $l; train bmshj2018-factorized_mse_small $l; done ) &
wait
