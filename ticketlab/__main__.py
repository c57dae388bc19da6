"""`python -m ticketlab ...` (and `torchrun --nproc-per-node N -m ticketlab find ...`): the command line."""

import sys

from ticketlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
