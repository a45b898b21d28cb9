"""`python -m heldout` runs the `heldout` console command."""

import sys

from heldout.cli import main

sys.exit(main())
