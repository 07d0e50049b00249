"""Fixtures shared by the contract suites."""

from __future__ import annotations

import pytest

from tests.contract.test_metadata_store import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves by hand (node expiry, batch windows)."""
    return FakeClock()
