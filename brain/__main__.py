"""python -m brain: the brain node (same as `neurojam brain`)."""

import sys

from neurojam.cli import main

sys.exit(main(["brain", *sys.argv[1:]]))
