"""Two hosts on one machine: network namespaces joined by a veth pair, with a shapeable link.

:class:`TwoHosts` creates namespaces ``A`` and ``B`` (unique names per instance), a veth pair
``A 10.213.N.1/30 <-> B 10.213.N.2/30`` and nothing else: the namespaces have only their
loopback and their end of the pair, so traffic between processes in ``A`` and ``B`` can only
cross that pair, and nothing of it reaches the machine's own interfaces.

The link can be shaped while processes run:

- :meth:`TwoHosts.set_loss`: an nftables rule in the *receiving* namespace's input hook drops
  that percentage of incoming packets at random (``numgen random mod 100 < N drop``). The sender
  sees no error: a lossy radio link, not a refusing one. (``tc netem`` is not available on
  these machines; ``tbf`` is.)
- :meth:`TwoHosts.set_rate`: a ``tc tbf`` token bucket on the sending side's veth egress.
- :meth:`TwoHosts.cut` / :meth:`TwoHosts.restore`: an nftables drop-everything rule in both
  namespaces (input hooks): the cable is pulled, interfaces and routes stay as they were.

Processes run inside a namespace with :meth:`TwoHosts.popen` (``ip netns exec``). DDS settings
that make ROS 2 discover across the pair are in :func:`dds_env`.

Needs root, ``ip`` (iproute2) with netns support, ``tc`` and ``nft`` (Debian ``nftables``;
scripts/setup.sh installs it as root). :func:`unavailable` says why not, for a clean skip.
Everything is removed by :meth:`TwoHosts.close` (deleting a namespace deletes its veth end,
qdiscs and nftables tables), also after a failed set-up.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: Second octet pair of the link's addresses: 10.213.<n>.0/30 (nothing else uses 10.213/16 here;
#: the addresses exist only inside the namespaces anyway).
SUBNET_PREFIX = "10.213"
_counter = itertools.count()

#: A Fast DDS profile that turns shared-memory transport off. Both "hosts" share /dev/shm, and
#: Fast DDS prefers SHM between participants it believes are on one host: data would bypass the
#: veth (no loss, no rate limit). FASTDDS_BUILTIN_TRANSPORTS=UDPv4 does the same by environment;
#: the profile is for Fast DDS versions or tools that do not read that variable.
UDP_ONLY_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>udp_only</transport_id>
      <type>UDPv4</type>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="udp_only_participant" is_default_profile="true">
    <rtps>
      <userTransports><transport_id>udp_only</transport_id></userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
    </rtps>
  </participant>
</profiles>
"""


def unavailable() -> str | None:
    """Why two hosts cannot be made here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the multihost tests as root)"
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y {package}; scripts/setup.sh " \
                   "does it as root)"
    probe = f"kosprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          check=False)
    if made.returncode != 0:
        return f"ip netns is unavailable here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def dds_env(profile_path: Path | None = None) -> dict[str, str]:
    """Environment that makes ROS 2 (rmw_fastrtps_cpp) talk across the veth pair.

    - ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET``: multicast discovery on the namespace's
      interfaces (the tests' own default, LOCALHOST, would keep discovery on loopback);
    - ``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``: no shared memory, which would bypass the veth;
    - with ``profile_path``, also the XML profile saying the same (:data:`UDP_ONLY_PROFILE`).

    ``ROS_DOMAIN_ID`` is inherited (any id works: the pair is private).
    """
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}
    if profile_path is not None:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(profile_path)
        env["RMW_FASTRTPS_USE_QOS_FROM_XML"] = "0"
    return env


@dataclass(frozen=True)
class Host:
    """One end: its namespace, veth name and address."""

    netns: str
    veth: str
    address: str


def _run(*cmd: str, netns: str | None = None, check: bool = True,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)
    done = subprocess.run(argv, capture_output=True, text=True, check=False, input=stdin,
                          timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{done.stderr.strip()}")
    return done


class TwoHosts:
    """Namespaces ``a`` and ``b`` joined by one veth pair; see the module docstring.

    Use as a context manager, or call :meth:`close` (idempotent, never raises).
    """

    def __init__(self) -> None:
        n = next(_counter)
        tag = f"{os.getpid() % 100000}{n}"
        subnet = (os.getpid() * 7 + n) % 250 + 1  # only for readability of captures
        self.a = Host(f"kosA{tag}", f"kva{tag}"[:15], f"{SUBNET_PREFIX}.{subnet}.1")
        self.b = Host(f"kosB{tag}", f"kvb{tag}"[:15], f"{SUBNET_PREFIX}.{subnet}.2")
        self._made: list[str] = []
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        for host in (self.a, self.b):
            _run("ip", "netns", "add", host.netns)
            self._made.append(host.netns)
        _run("ip", "link", "add", self.a.veth, "netns", self.a.netns, "type", "veth",
             "peer", "name", self.b.veth, "netns", self.b.netns)
        for host in (self.a, self.b):
            ns = host.netns
            _run("ip", "addr", "add", f"{host.address}/30", "dev", host.veth, netns=ns)
            _run("ip", "link", "set", "lo", "up", netns=ns)
            _run("ip", "link", "set", host.veth, "up", netns=ns)
            # Multicast (DDS discovery) leaves through the veth: there is no default route.
            _run("ip", "route", "add", "224.0.0.0/4", "dev", host.veth, netns=ns)
            # One table per namespace: a chain for random loss, one for cutting the link.
            _run("nft", "-f", "-", netns=ns, stdin=(
                "table inet kos {\n"
                "  chain input { type filter hook input priority 0; policy accept; }\n"
                "}\n"))

    # -- processes -------------------------------------------------------------------------
    def command(self, host: Host, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", host.netns, *argv]

    def popen(self, host: Host, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``host``'s namespace, in a session of its own."""
        return subprocess.Popen(self.command(host, argv), env=dict(env or os.environ),
                                start_new_session=True, **kwargs)

    # -- link shaping ----------------------------------------------------------------------
    def set_loss(self, percent: float, *, receiver: Host | None = None) -> None:
        """Drop ``percent`` (integer %) of packets arriving at ``receiver`` (default ``b``),
        at random; 0 removes the rule. The sender sees no error."""
        host = receiver or self.b
        _run("nft", "flush", "chain", "inet", "kos", "input", netns=host.netns)
        if percent > 0:
            _run("nft", "add", "rule", "inet", "kos", "input", "iifname", host.veth,
                 "numgen", "random", "mod", "100", "<", str(round(percent)), "counter", "drop",
                 netns=host.netns)

    def dropped(self, host: Host | None = None) -> int:
        """Packets the loss rule dropped so far in ``host`` (default ``b``)."""
        listing = _run("nft", "list", "chain", "inet", "kos", "input",
                       netns=(host or self.b).netns).stdout
        total = 0
        for line in listing.splitlines():
            words = line.split()
            if "drop" in words and "packets" in words:
                total += int(words[words.index("packets") + 1])
        return total

    def set_rate(self, kbit_s: int | None, *, sender: Host | None = None) -> None:
        """Limit what ``sender`` (default ``a``) sends to ``kbit_s`` (tbf); None removes it."""
        host = sender or self.a
        _run("tc", "qdisc", "del", "dev", host.veth, "root", netns=host.netns, check=False)
        if kbit_s is not None:
            # burst: 10 ms at the rate, at least a few full-size packets; latency bounds the
            # queue (packets waiting longer are dropped, as on a real bottleneck).
            burst = max(kbit_s * 1000 // 8 // 100, 8 * 1514)
            _run("tc", "qdisc", "add", "dev", host.veth, "root", "tbf", "rate",
                 f"{kbit_s}kbit", "burst", str(burst), "latency", "200ms", netns=host.netns)

    def cut(self) -> None:
        """Pull the cable: both namespaces drop everything arriving on the veth."""
        for host in (self.a, self.b):
            _run("nft", "add", "chain", "inet", "kos", "cut",
                 "{ type filter hook input priority -10; policy accept; }", netns=host.netns)
            _run("nft", "add", "rule", "inet", "kos", "cut", "iifname", host.veth, "drop",
                 netns=host.netns)

    def restore(self) -> None:
        """Plug the cable back in (the loss rule, if any, stays)."""
        for host in (self.a, self.b):
            _run("nft", "delete", "chain", "inet", "kos", "cut", netns=host.netns, check=False)

    def veth_stats(self, host: Host) -> dict[str, int]:
        """``rx_packets``/``tx_packets``/``rx_bytes``/``tx_bytes`` of ``host``'s veth end."""
        out = {}
        for name in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes"):
            text = _run("cat", f"/sys/class/net/{host.veth}/statistics/{name}",
                        netns=host.netns).stdout
            out[name] = int(text.strip())
        return out

    # -- teardown --------------------------------------------------------------------------
    def close(self) -> None:
        """Delete both namespaces (their veth ends, qdiscs and nftables tables go with them)."""
        while self._made:
            netns = self._made.pop()
            # Processes still inside keep a namespace alive after `del`; kill them first.
            pids = _run("ip", "netns", "pids", netns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            _run("ip", "netns", "del", netns, check=False)

    def __enter__(self) -> TwoHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProbeProcess:
    """``test/multihost/netns_probe.py`` running inside a namespace, driven over stdin/stdout.

    Received messages are in :attr:`out` (JSON lines); :meth:`ask` sends a command and returns
    its JSON answer.
    """

    SCRIPT = Path(__file__).resolve().parents[1] / "multihost" / "netns_probe.py"

    def __init__(self, hosts: TwoHosts, host: Host, *, namespace: str, out: Path,
                 qos: str = "reliable", depth: int = 1000,
                 env: Mapping[str, str] | None = None) -> None:
        import queue
        import sys
        import threading

        self.out = out
        self._answers: queue.Queue[str] = queue.Queue()
        self._log = out.with_suffix(".log")
        self.proc = hosts.popen(
            host, [sys.executable, str(self.SCRIPT), "--namespace", namespace, "--qos", qos,
                   "--depth", str(depth), "--out", str(out)],
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log.open("w"), text=True)

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self._answers.put(line)

        threading.Thread(target=read, daemon=True).start()

    def ask(self, command: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Send ``command``; its answer (AssertionError on timeout or a dead probe)."""
        import json
        import queue

        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        try:
            line = self._answers.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"probe gave no answer to {command!r} in {timeout_s} s; "
                                 f"log: {self.log}") from None
        answer: dict[str, Any] = json.loads(line)
        return answer

    def must(self, command: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """:meth:`ask`, asserting the answer is ok."""
        answer = self.ask(command, timeout_s)
        assert answer.get("ok"), f"{command}: {answer}; log: {self.log}"
        return answer

    @property
    def log(self) -> str:
        """The probe's stderr so far."""
        return self._log.read_text(errors="replace")

    def messages(self) -> list[dict[str, Any]]:
        """Every message received so far (``data`` decoded to bytes)."""
        import base64
        import json

        found = []
        for line in self.out.read_text().splitlines():
            item = json.loads(line)
            item["data"] = base64.b64decode(item["data"])
            found.append(item)
        return found

    def close(self) -> None:
        """Quit (or kill after 10 s)."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)


# ---------------------------------------------------------------------- audio across the link

#: The stream the two-host tests and benchmark send: mic_node's tone, 48 kHz stereo S16LE.
RATE_HZ = 48000
CHANNELS = 2
FRAME_BYTES = 2 * CHANNELS
CHUNK_MS = 20
CHUNK_FRAMES = RATE_HZ * CHUNK_MS // 1000
#: Payload bit rate of one stream (bit/s); on the wire about 4 % more (RTPS, UDP, IP headers
#: of the 3 IP fragments each 3840-byte chunk becomes at MTU 1500).
STREAM_BIT_S = RATE_HZ * FRAME_BYTES * 8
WIRE_BIT_S = STREAM_BIT_S * 104 // 100
NS_PER_S = 1_000_000_000


class AudioAcross:
    """mic_node and a probe in host ``a``; recorder_node and a probe in host ``b``.

    The probe in ``a`` (reliable, same host) records what mic_node published; the probe in
    ``b`` what crossed the link with its ``probe_qos``; the recorder subscribes with
    ``recorder_qos``. mic_node publishes reliably (a reliable writer serves best-effort readers
    too) with a history of ``depth`` chunks.
    """

    def __init__(self, hosts: TwoHosts, work: Path, *, namespace: str,
                 probe_qos: str = "reliable", recorder_qos: str | None = "reliable",
                 depth: int = 500) -> None:
        from kos_testing.procs import NodeProcess

        self.hosts = hosts
        self.work = work
        env = dds_env()
        self.mic = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, env=env,
                               params={"source": "tone", "sample_rate": RATE_HZ,
                                       "channels": CHANNELS, "chunk_ms": float(CHUNK_MS),
                                       "autostart": False, "qos.reliability": "reliable",
                                       "qos.depth": depth})
        self.mic.cmd = hosts.command(hosts.a, self.mic.cmd)
        self.recorder: NodeProcess | None = None
        if recorder_qos is not None:
            self.recorder = NodeProcess(
                "kos_audio.nodes.recorder_node", namespace=namespace, env=env,
                params={"output_dir": str(work / "recordings"), "qos.reliability": recorder_qos,
                        "qos.depth": depth, "sync_period_s": 0.1, "recover": False})
            self.recorder.cmd = hosts.command(hosts.b, self.recorder.cmd)
        self.sent: ProbeProcess | None = None
        self.received: ProbeProcess | None = None
        self._namespace = namespace
        self._probe_qos = probe_qos
        self._depth = depth
        self.path: Path | None = None

    def start(self) -> None:
        """Start everything, wait for discovery across the link, start recording, enable the
        mic: from here on chunks flow."""
        env = dds_env()
        self.mic.start()
        if self.recorder is not None:
            self.recorder.start()
        self.sent = ProbeProcess(self.hosts, self.hosts.a, namespace=self._namespace,
                                 out=self.work / "sent.jsonl", env=env)
        self.received = ProbeProcess(self.hosts, self.hosts.b, namespace=self._namespace,
                                     out=self.work / "received.jsonl", qos=self._probe_qos,
                                     depth=self._depth, env=env)
        self.sent.must("ready")
        self.received.must("ready")
        # Host a's graph shows both b-side subscriptions: discovery crossed the link.
        self.sent.must(f"subscribers {3 if self.recorder is not None else 2}")
        self.received.must("publishers 1")
        if self.recorder is not None:
            self.path = Path(self.received.must("start")["message"])
        self.sent.must("enable")

    def wait_sent(self, chunks: int, timeout_s: float = 60.0) -> None:
        """Until mic_node published ``chunks`` chunks (as heard in host a)."""
        from kos_testing.ros import wait_until

        sent = self.sent
        assert sent is not None
        wait_until(lambda: sent.must("count")["count"] >= chunks, timeout_s,
                   f"mic_node to publish {chunks} chunks")

    def stop_mic(self) -> int:
        """Disable the mic; how many chunks it published (all heard in host a)."""
        assert self.sent is not None
        self.sent.must("disable")
        # The probe in a is on the same host with a reliable subscription: once its count
        # stops at the last chunk the mic published, that is the total.
        return self._settled(self.sent, quiet_s=0.5)

    def settle_received(self, expected: int | None, quiet_s: float = 1.0,
                        timeout_s: float = 30.0) -> int:
        """Until host b's probe has ``expected`` chunks (reliable), or, with None (best
        effort: losses are never repaired), until nothing arrived for ``quiet_s``, which is
        longer than anything can wait in the link's queue (tbf latency 200 ms)."""
        assert self.received is not None
        if expected is None:
            return self._settled(self.received, quiet_s, timeout_s)
        from kos_testing.ros import wait_until

        received = self.received
        wait_until(lambda: received.must("count")["count"] >= expected, timeout_s,
                   f"host b to receive {expected} chunks")
        return int(received.must("count")["count"])

    def settle_recording(self, expected_frames: int | None, quiet_s: float = 1.0,
                         timeout_s: float = 30.0) -> None:
        """Until the recording's in-progress sidecar (synced every 0.1 s) shows
        ``expected_frames``, or (None) stopped growing for ``quiet_s``."""
        import json

        assert self.path is not None
        sidecar = self.path.with_suffix(".json")

        def samples() -> int:
            try:
                return int(json.loads(sidecar.read_text())["samples"])
            except (OSError, ValueError, KeyError):
                return -1
        deadline = time.monotonic() + timeout_s
        last, since = samples(), time.monotonic()
        while True:
            now = samples()
            if expected_frames is not None and now >= expected_frames:
                return
            if now != last:
                last, since = now, time.monotonic()
            elif expected_frames is None and time.monotonic() - since >= quiet_s:
                return
            assert time.monotonic() < deadline, \
                f"recording at {now} frames, expected {expected_frames}"
            time.sleep(0.05)

    def stop_recording(self) -> dict[str, Any]:
        """Stop the recorder; its final sidecar."""
        import json

        assert self.received is not None and self.path is not None
        answer = self.received.must("stop")
        assert answer["message"] == str(self.path)
        content: dict[str, Any] = json.loads(self.path.with_suffix(".json").read_text())
        return content

    @staticmethod
    def _settled(probe: ProbeProcess, quiet_s: float, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        last, since = probe.must("count")["count"], time.monotonic()
        while time.monotonic() - since < quiet_s:
            assert time.monotonic() < deadline, "messages kept arriving"
            time.sleep(0.05)
            count = probe.must("count")["count"]
            if count != last:
                last, since = count, time.monotonic()
        return int(last)

    def close(self) -> None:
        """Stop every process (probes, nodes)."""
        for probe in (self.sent, self.received):
            if probe is not None:
                probe.close()
        for node in (self.mic, self.recorder):
            if node is not None:
                node.stop()


def stamps_of(messages: list[dict[str, Any]]) -> list[int]:
    """The stamps of probe messages."""
    return [int(m["stamp"]) for m in messages]


def chunk_index(stamp_ns: int, first_ns: int) -> int:
    """Which chunk (counted from the one stamped ``first_ns``) is stamped ``stamp_ns``."""
    return round((stamp_ns - first_ns) * RATE_HZ / NS_PER_S / CHUNK_FRAMES)


def missing_runs(sent: list[int], received: list[int]) -> list[tuple[int, int]]:
    """Runs of consecutive chunks of ``sent`` (stamps) absent from ``received``, between the
    first and the last received: ``(first index, length)`` each."""
    got = set(received)
    inside = [i for i, s in enumerate(sent) if s in got]
    if not inside:
        return []
    runs: list[tuple[int, int]] = []
    for i in range(inside[0], inside[-1] + 1):
        if sent[i] in got:
            continue
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


@pytest.fixture
def two_hosts() -> Iterator[TwoHosts]:
    """Two network namespaces joined by a shapeable veth pair (skips without root/netns)."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    hosts = TwoHosts()
    try:
        yield hosts
    finally:
        hosts.close()
