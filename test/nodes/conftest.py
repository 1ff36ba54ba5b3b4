"""Fixtures of the node tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kos_testing.ros import RosProbe
from speaker_helpers import Speaker


@pytest.fixture
def make_speaker(ros: RosProbe, namespace: str) -> Iterator[Callable[..., Speaker]]:
    started: list[Speaker] = []

    def make(**kwargs: Any) -> Speaker:
        speaker = Speaker(ros, namespace, **kwargs)
        started.append(speaker)
        return speaker

    yield make
    for speaker in started:
        speaker.stop()
