"""``python -m examples.complete``: run the complete example (see :mod:`examples.complete`)."""

import sys

from examples.complete.app import main

if __name__ == "__main__":
    sys.exit(main())
