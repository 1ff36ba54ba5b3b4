"""Audio between two hosts: latency and loss of mic_node -> recorder_node per link condition.

Two network namespaces joined by a veth pair (test/kos_testing/netns.py; needs root, ``ip``,
``tc`` and ``nft``): mic_node (tone, 48 kHz stereo S16LE, 20 ms chunks, reliable publisher,
history 500 chunks) and a probe in host a; recorder_node and a probe in host b. For each link
condition the stream runs ``--seconds`` (default 60) and this prints, per condition:

- link latency: when host b's probe received each chunk minus when host a's probe (same
  machine, same clock) received it, p50/p99/max in ms;
- delivery latency: host b's receive time minus the end of the chunk's audio (its stamp plus
  20 ms): what a consumer on the other host waits beyond the audio itself;
- loss: chunks published vs. received by host b's probe, and the recorder's gap count and
  filled duration.

Conditions: clean; 2 % random loss (nftables, b's input) + tbf rate limit 25 % above the two
readers' traffic, reliable and best effort; the same clean link cut for 5 s mid-stream
(reliable probe, best-effort recorder).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the test harness: TwoHosts, AudioAcross

from kos_testing.netns import (
    CHUNK_FRAMES,
    CHUNK_MS,
    NS_PER_S,
    RATE_HZ,
    WIRE_BIT_S,
    AudioAcross,
    TwoHosts,
    missing_runs,
    stamps_of,
    unavailable,
)

from benchmarks.common import percentiles

LOSS_PERCENT = 2
RATE_KBIT = 2 * WIRE_BIT_S * 125 // 100 // 1000
CUT_S = 5.0


@dataclass(frozen=True)
class Condition:
    name: str
    loss_percent: int = 0
    rate_kbit: int | None = None
    probe_qos: str = "reliable"
    recorder_qos: str = "reliable"
    cut_s: float = 0.0


CONDITIONS = [
    Condition("clean, reliable"),
    Condition("clean, best effort", probe_qos="best_effort", recorder_qos="best_effort"),
    Condition(f"{LOSS_PERCENT}% loss + {RATE_KBIT} kbit/s, reliable", LOSS_PERCENT, RATE_KBIT),
    Condition(f"{LOSS_PERCENT}% loss + {RATE_KBIT} kbit/s, best effort", LOSS_PERCENT,
              RATE_KBIT, "best_effort", "best_effort"),
    Condition(f"cut {CUT_S:g} s, reliable probe / best-effort recorder",
              recorder_qos="best_effort", cut_s=CUT_S),
]


def run(condition: Condition, seconds: float, work: Path) -> str:
    chunks = round(seconds * 1000 / CHUNK_MS)
    with TwoHosts() as hosts:
        if condition.rate_kbit is not None:
            hosts.set_rate(condition.rate_kbit)
        if condition.loss_percent:
            hosts.set_loss(condition.loss_percent)
        across = AudioAcross(hosts, work, namespace=f"/bench{os.getpid()}",
                             probe_qos=condition.probe_qos,
                             recorder_qos=condition.recorder_qos)
        try:
            across.start()
            if condition.cut_s:
                across.wait_sent(chunks // 2)
                hosts.cut()
                across.wait_sent(chunks // 2 + round(condition.cut_s * 1000 / CHUNK_MS))
                hosts.restore()
            across.wait_sent(chunks)
            total = across.stop_mic()
            reliable = condition.probe_qos == "reliable"
            across.settle_received(total if reliable else None)
            across.settle_recording(None)
            side = across.stop_recording()
            assert across.sent is not None and across.received is not None
            sent, received = across.sent.messages(), across.received.messages()
            dropped = hosts.dropped()
        finally:
            across.close()
    sent_at = {m["stamp"]: m["recv"] for m in sent}
    link_ms = [(m["recv"] - sent_at[m["stamp"]]) / 1e6 for m in received
               if m["stamp"] in sent_at]
    chunk_ns = CHUNK_FRAMES * NS_PER_S // RATE_HZ
    delivery_ms = [(m["recv"] - m["stamp"] - chunk_ns) / 1e6 for m in received]
    runs = missing_runs(stamps_of(sent), stamps_of(received))
    lost = len(sent) - len(received)
    gaps = side["gaps"]
    return (f"{condition.name}: {len(sent)} chunks sent, {lost} lost at the probe "
            f"({100 * lost / max(len(sent), 1):.2f} %, {len(runs)} gaps); recorder "
            f"{gaps['count']} gaps, {gaps['missing_s']:.3f} s filled; "
            f"{dropped} packets dropped by the link\n"
            f"    link latency (ms)     {percentiles(link_ms)}\n"
            f"    delivery latency (ms) {percentiles(delivery_ms)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmark multihost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="stream length per link "
                        "condition (s)")
    parser.add_argument("--only", help="run only conditions whose name contains this")
    opts = parser.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"benchmark multihost: {reason}", file=sys.stderr)
        return 1
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    print(f"48 kHz stereo S16LE, {CHUNK_MS} ms chunks, {opts.seconds:g} s per condition; "
          f"DDS: Fast DDS over UDPv4 (no SHM), discovery range SUBNET")
    for condition in CONDITIONS:
        if opts.only and opts.only not in condition.name:
            continue
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="bench-mh-") as tmp:
            print(run(condition, opts.seconds, Path(tmp)), flush=True)
        print(f"    ({time.monotonic() - started:.0f} s)", flush=True)
    return 0
