"""`python -m ticketlab.cli ...`: the same command line as `python -m ticketlab` and the `ticketlab` script."""

import sys

from ticketlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
