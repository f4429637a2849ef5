#!/usr/bin/env bash
# Re-creates the committed CI checkpoints that suites/ci.yaml evaluates: trains suites/ci_train.yaml into
# results/ci_train (records kept) and copies each evaluated model's checkpoint here.
#   bash baselines/ci_models/make.sh
# Changing these files changes the numbers CI guards: re-make baselines/ci_digits.json afterwards (README, "CI
# regression").
set -euo pipefail
cd "$(dirname "$0")/../.."
rocl-bench run suites/ci_train.yaml --out results/ci_train --quiet
for m in simclr_le rocl_rle madry trades standard; do
  src=$(ls -d results/ci_train/models/"$m"-*/ | head -n 1)
  cp "$src/checkpoint.pt" "baselines/ci_models/$m.pt.tmp"
  mv "baselines/ci_models/$m.pt.tmp" "baselines/ci_models/$m.pt"
done
sha256sum baselines/ci_models/*.pt
