"""The packages of the distribution (everything else is in pyproject.toml).

The Alembic migrations live in the repository's top-level ``migrations/`` folder; a built wheel ships them
inside the service package, as ``service/migrations`` (``service.migrate`` looks there first, then beside
the package, which is where they are in a source checkout or an editable install).
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["daik_core*", "service*", "worker*"]),
        "service.migrations",
        "service.migrations.versions",
    ],
    package_dir={"service.migrations": "migrations"},
)
