#!/usr/bin/env bash
# The paper's grid (Table 1, Figs. 2-4): resnet18/resnet50/vgg19 x random/moderate/dgpruning x
# ICE/topic/VEBI x rho 5..50 % and 95 %, on ImageNet.
#   IMAGENET_ROOT=/data/imagenet SLURM_PARTITION=gpu scripts/sweep_paper.sh
#   LAUNCHER=joblib scripts/sweep_paper.sh dataset.max_per_class_train=100     # one machine, a subset
# LAUNCHER: slurm (default), ray_cluster, joblib or basic. Extra arguments are Hydra overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher="${LAUNCHER:-slurm}"
args=(-m experiment=paper)
[[ "$launcher" != basic ]] && args+=("hydra/launcher=$launcher")
exec .venv/bin/python -m coreset_interp.run "${args[@]}" "$@"
