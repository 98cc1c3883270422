"""Developer sessions: ``nox -s tests lint types benchmarks``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "types"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS[0])
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage and its floor (pyproject: fail_under)."""
    session.install("-e", ".[tests]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """Lint and check formatting with ruff; check the import contract (pyproject.toml)."""
    session.install("ruff>=0.6", "import-linter>=2.14")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # The layering and the independence of the CLI and the fake, read from the source:
    # the package need not be installed.
    session.run("lint-imports", "--no-logo")


@nox.session(python=PYTHONS[0])
def types(session: nox.Session) -> None:
    """Type-check the package with mypy in strict mode."""
    session.install("-e", ".[tests]", "mypy>=1.11")
    session.run("mypy")


@nox.session(python=PYTHONS[0])
def benchmarks(session: nox.Session) -> None:
    """Run the benchmark table against the fake vendor served on loopback."""
    session.install("-e", ".[testing,cli]")
    session.run("python", "benchmarks/run.py", *session.posargs)
