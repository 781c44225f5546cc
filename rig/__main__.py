"""python -m rig: the rig node (same as `neurojam rig`)."""

import sys

from neurojam.cli import main

sys.exit(main(["rig", *sys.argv[1:]]))
