"""What every test shares: the markers each test folder carries, and the DOTA example images.

Markers (``pytest -m``): ``db`` needs the PostgreSQL server, ``redis`` the Redis server, ``browser``
Chromium, ``gpu`` a CUDA device, ``slow`` trains or runs whole processes for a while. The fast inner loop
is ``pytest -m "not slow and not browser"``; ``bash scripts/test.sh`` runs everything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Two DOTA-v1.0 images with their labels from the DOTA devkit. They are not part of the repository
#: (their licence is DOTA's): a checkout next to a ``shared/`` folder that holds them runs their tests.
DOTA_EXAMPLE = REPO.parent / "shared" / "data" / "dota_example"

# the first folder under tests/ -> the markers of every test in it
_FOLDER_MARKS: dict[str, tuple[str, ...]] = {
    "browser": ("browser", "db", "redis", "slow"),
    "e2e": ("db", "redis", "slow"),
    "migrations": ("db",),
    "service": ("db", "redis"),
    "worker": ("db", "redis", "slow"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = REPO / "tests"
    for item in items:
        try:
            folder = Path(item.fspath).resolve().relative_to(tests).parts[0]
        except ValueError:
            continue
        for name in _FOLDER_MARKS.get(folder, ()):
            item.add_marker(getattr(pytest.mark, name))


@pytest.fixture(scope="session")
def dota_example() -> Path:
    """The DOTA example folder (``images/``, ``labelTxt/``); the test is skipped, saying why, without it."""
    if not (DOTA_EXAMPLE / "images").is_dir() or not (DOTA_EXAMPLE / "labelTxt").is_dir():
        pytest.skip(f"the DOTA example images are not at {DOTA_EXAMPLE} (they are not in the repository)")
    return DOTA_EXAMPLE
