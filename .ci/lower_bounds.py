"""Check that every lower bound in pyproject.toml is the version installed.

Run after installing with ``uv pip install --resolution lowest-direct -e ".[tests]"``: each
direct dependency (the core's and those of the extras that ``tests`` pulls in) is then at
the lowest version the resolver could use. When that is higher than the bound says, the
bound is not true (that version cannot be installed with the others), so say which.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

SELF = "itnio-async"
#: The extras whose bounds the tests' install resolves (``dev``'s tools are not installed).
CHECKED_EXTRAS = ("speedups", "testing", "cli", "redis", "examples", "tests")


def main() -> int:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in CHECKED_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    wrong = []
    for line in requirements:
        requirement = Requirement(line)
        if requirement.name == SELF:
            continue
        bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        if not bounds:
            wrong.append(f"{line}: no lower bound")
            continue
        try:
            installed = Version(version(requirement.name))
        except PackageNotFoundError:
            wrong.append(f"{line}: not installed")
            continue
        if installed != max(bounds):
            wrong.append(f"{line}: the lowest that resolves is {installed}")
    for problem in wrong:
        print(f"lower bound not true: {problem}", file=sys.stderr)
    print(f"{len(requirements) - len(wrong)} lower bounds checked, {len(wrong)} not true")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
