"""Developer sessions: ``nox -s tests lint types benchmarks``.

``tests`` runs on every Python the project claims (3.11, 3.12, 3.13), each found on the
PATH as ``python3.X``; with pyenv, make them all visible at once first, for instance
``pyenv shell 3.11.7 3.12.1 3.13.0``. ``tests_lowest`` runs the suite on the lowest
version of each direct dependency that ``pyproject.toml`` allows, so every lower bound
there is one that works.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "types"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12", "3.13"]
#: The major versions of redis-py the shared limiter supports.
REDIS_MAJORS = ["5", "6", "7", "8"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage and its floor (pyproject: fail_under)."""
    session.install("-e", ".[tests]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def tests_lowest(session: nox.Session) -> None:
    """Run the test suite on the lowest versions that pyproject.toml allows.

    uv resolves every direct dependency (and those of the extras) to the lowest version
    allowed and the rest to what those need, on the oldest Python the project supports
    (pip cannot resolve that way).
    """
    session.install("uv>=0.4")
    session.run(
        "uv",
        "pip",
        "install",
        "--python",
        f"{session.bin}/python",
        "--resolution",
        "lowest-direct",
        "--reinstall",
        "-e",
        ".[tests]",
    )
    # Each direct dependency must have come out at its bound, or the bound is not true.
    session.run("python", ".ci/lower_bounds.py")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """Lint and check formatting with ruff; check the import contract (pyproject.toml)."""
    session.install("ruff>=0.9", "import-linter>=2.14")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # The layering and the independence of the CLI and the fake, read from the source:
    # the package need not be installed.
    session.run("lint-imports", "--no-logo")


@nox.session(python=PYTHONS[0])
def types(session: nox.Session) -> None:
    """Type-check the package with mypy in strict mode."""
    session.install("-e", ".[tests]", "mypy>=1.20")
    session.run("mypy")


@nox.session(python=PYTHONS[0])
@nox.parametrize("redis_major", REDIS_MAJORS)
def redis_versions(session: nox.Session, redis_major: str) -> None:
    """Run the shared limiter's tests with each supported major version of redis-py.

    Installs only the ``testing`` and ``redis`` extras and the test tools: the ``examples``
    extra pulls ``saq``, which takes redis-py 6 and 7 but not yet 8. Needs ``redis-server``
    on PATH (or ``ITNIO_TEST_REDIS_URL``).
    """
    session.install(
        "-e",
        ".[testing,redis]",
        "pytest>=8",
        "pytest-asyncio>=0.24",
        "pytest-cov>=5",
        "pytest-timeout>=2.3",
        f"redis=={redis_major}.*",
    )
    session.run("python", "-c", "import redis; print('redis-py', redis.__version__)")
    session.run(
        "pytest", "-p", "no:cacheprovider", "--no-cov", "tests/test_redis_limiter.py",
        *session.posargs,
    )  # fmt: skip


@nox.session(python=PYTHONS[0])
def benchmarks(session: nox.Session) -> None:
    """Run the benchmark table against the fake vendor served on loopback."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)
