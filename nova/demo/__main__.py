"""``python -m nova.demo``: run the complete example (see :mod:`nova.demo`)."""

import sys

from nova.demo.app import main

if __name__ == "__main__":
    sys.exit(main())
