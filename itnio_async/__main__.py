"""``python -m itnio_async``: the ``itnio-async`` command line (see ``itnio_async._cli``)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
