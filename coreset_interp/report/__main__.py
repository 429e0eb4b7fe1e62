"""``python -m coreset_interp.report SWEEP_DIR``."""

import sys

from coreset_interp.report.cli import main

sys.exit(main())
