"""``python -m sleapflow``: the same command line as the ``sleapflow`` script."""

import sys

from sleapflow.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
