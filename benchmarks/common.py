"""Measuring helpers shared by the benchmarks: CPU of a process, percentiles, pulse server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time of process ``pid`` (and its threads) between :meth:`start` and :meth:`stop`,
    as % of one core.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._t0 = 0.0
        self._cpu0 = 0.0

    def _cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def start(self) -> None:
        self._t0, self._cpu0 = time.monotonic(), self._cpu_s()

    def stop(self) -> float:
        return 100.0 * (self._cpu_s() - self._cpu0) / (time.monotonic() - self._t0)


def percentiles(values: list[float]) -> str:
    """``p50 x p99 y max z`` of ``values`` (ms)."""
    if not values:
        return "no samples"
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50:.2f} p99 {p99:.2f} max {max(values):.2f}"
