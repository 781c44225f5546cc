import sys

from neurojam.cli import main

sys.exit(main())
