#!/usr/bin/env bash
# Build one model's ImageNet activation stores with a SLURM array: task i of N extracts shard i of every
# split's chunks (extract.chunk_size images each, float16 maps), each chunk published atomically into the
# shared cache; the last task to finish assembles the stores. Jobs submitted afterwards find them complete
# (add extract.require_complete=true to make a job fail in one line instead of extracting what is missing).
# A killed or timed-out task is simply resubmitted: it resumes at its first missing chunk.
#   scripts/extract_imagenet.sh 32 model=resnet50 interpreter=vebi     # 32 tasks; VEBI's energies too
#   scripts/extract_imagenet.sh 8 model=vgg19 hydra.launcher.partition=gpu
set -euo pipefail
cd "$(dirname "$0")/.."
shards="${1:?usage: extract_imagenet.sh NUM_SHARDS [hydra overrides...]}"
shift
exec .venv/bin/python -m coreset_interp.extract -m hydra/launcher=slurm dataset=imagenet \
  "extract.shard=range(0,${shards})" "extract.num_shards=${shards}" \
  hydra.launcher.timeout_min=240 "$@"
