"""The ``itnio-async`` command line: ``main`` runs it (see ``_commands`` for what it does).

A client of the library like any other: it imports only the public names of
``itnio_async`` (and ``itnio_async.testing`` for ``--demo``), never a private module, so
what the tool needs is what any application can have. The import contract in
``pyproject.toml`` checks that.

* ``_commands``: the arguments, the task commands and their exit codes;
* ``_calls``: the call-record and task-detail commands (``calls export``, ``tasks show``);
* ``_output``: JSON Lines and CSV, written one whole page at a time;
* ``_manifest``: the manifest beside an output file, from which a re-run resumes;
* ``_progress``: the progress bar, plain progress lines and the library's logging.
"""

from collections.abc import Sequence

from . import _calls, _commands
from ._commands import DEMO_RATE_LIMIT, demo_vendor, demo_window

# The demo's fake vendor is public so that the examples' --demo runs against the same one.
__all__ = ["main", "demo_vendor", "demo_window", "DEMO_RATE_LIMIT"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``itnio-async`` with the arguments ``argv`` (default ``None``: ``sys.argv[1:]``):
    ``export`` and ``count`` for tasks, ``calls export`` and ``tasks show``.

    Returns the exit code (the console script exits with it; see the README's table of
    exit codes); every error is reported on stderr as one line, never raised.
    """
    return _commands.main(argv, register=_calls.register)
