#!/usr/bin/env bash
# Coreset transferability (Sec. 4.5): coresets chosen on resnet50 features interpret resnet18 and vgg19
# with ICE and VEBI. Run scripts/sweep_paper.sh on the same cache_dir for the non-transferred baseline.
#   IMAGENET_ROOT=/data/imagenet SLURM_PARTITION=gpu scripts/sweep_transfer.sh
# LAUNCHER: slurm (default), ray_cluster, joblib or basic. Extra arguments are Hydra overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher="${LAUNCHER:-slurm}"
args=(-m experiment=transfer)
[[ "$launcher" != basic ]] && args+=("hydra/launcher=$launcher")
exec .venv/bin/python -m coreset_interp.run "${args[@]}" "$@"
