"""Shared pytest configuration."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sim-seeds",
        action="store",
        type=int,
        default=200,
        help="how many random seeds tests/sim runs through the deterministic simulator (default 200)",
    )


@pytest.fixture
def sim_seeds(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--sim-seeds"))
