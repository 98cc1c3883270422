"""``python -m itnio_async``: the ``itnio-async`` command line (see ``itnio_async.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
