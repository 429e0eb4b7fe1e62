#!/usr/bin/env bash
# The quick sweep on this machine: the embedded default, every selector and interpreter, 2 parallel jobs
# sharing one artifact cache; Table 1, figures and report.html land in <sweep dir>/report.
#   scripts/sweep_quick.sh                          # extra Hydra overrides go after, e.g. logger=none
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m coreset_interp.run -m experiment=quick hydra/launcher=joblib hydra.launcher.n_jobs=2 "$@"
