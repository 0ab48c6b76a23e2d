"""``python -m mcplane.cli ...``: the ``mcplane`` command with this interpreter."""

import sys

from mcplane.cli import main

sys.exit(main())
