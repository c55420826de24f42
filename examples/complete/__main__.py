"""``python -m examples.complete``: run the complete example (see :mod:`examples.complete`)."""

import sys

from nova.demo.app import main

if __name__ == "__main__":
    sys.exit(main())
