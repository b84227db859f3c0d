"""Shared helpers for the fire tests: feeding audio to a detector, the in-repo data excerpts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qrad_agent.fire.alarm_sound import AlarmSoundDetector
from qrad_agent.fire.config import SoundConfig
from qrad_hwsim.fire import sounds

EXCERPTS = Path(__file__).resolve().parent / "data"


def feed(signal: np.ndarray, det: AlarmSoundDetector | None = None) -> tuple[AlarmSoundDetector, list[float]]:
    """Feed a full-scale float signal in 0.125 s blocks; returns the detector and confirmation times."""
    det = det or AlarmSoundDetector(SoundConfig())
    pcm = sounds.to_int16(signal)
    hits = []
    for i in range(0, pcm.size - 1999, 2000):
        t = (i + 2000) / sounds.RATE_HZ
        if det.feed(t, pcm[i : i + 2000]):
            hits.append(t)
    return det, hits


@pytest.fixture
def excerpts() -> Path:
    """tests/fire/data: small excerpts of the public data sets, with their sources (README.md there)."""
    return EXCERPTS


@pytest.fixture
def feed_audio():
    """The ``feed`` helper as a fixture."""
    return feed
