"""Fixtures for the whole suite."""

from __future__ import annotations

import pytest
import structlog


@pytest.fixture(autouse=True)
def _fresh_structlog():
    """Each test starts and ends with structlog's defaults: no configuration leaks between tests."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
