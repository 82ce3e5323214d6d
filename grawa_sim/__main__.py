"""`python -m grawa_sim`: the command line (grawa_sim.cli.main)."""

import sys

from grawa_sim.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
