"""A ROS 2 probe that runs as its own process, inside a network namespace.

Subscribes ``<namespace>/audio_stamped`` and writes every message it receives as one JSON line
to ``--out``: ``{"stamp": ns, "bytes": n, "recv": time_ns, "data": base64}``. Commands come on
stdin, one per line; each is answered by one JSON line on stdout:

- ``ready``: ``{"event": "ready"}`` once the subscription exists;
- ``subscribers N`` / ``publishers N``: wait until the graph shows at least N subscriptions /
  publishers of ``audio_stamped``;
- ``enable`` / ``disable``: call ``mic/enable`` (std_srvs/SetBool);
- ``start`` / ``stop``: call ``recorder/start`` / ``recorder/stop`` (std_srvs/Trigger; start is
  retried while the recorder has no audio_info yet);
- ``count``: how many messages it received, and the last stamp;
- ``quit``.

Answers: ``{"event": <command>, "ok": bool, "message": str, ...}``. Run with
``python netns_probe.py --namespace /x --qos reliable --out file``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
from typing import Any

import rclpy
from audio_common_msgs.msg import AudioDataStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool, Trigger

NS_PER_S = 1_000_000_000


class Probe:
    def __init__(self, namespace: str, qos: str, depth: int, out: str) -> None:
        self.node = Node("netns_probe", namespace=namespace)
        reliability = (ReliabilityPolicy.RELIABLE if qos == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        profile = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                             reliability=reliability)
        self._out = open(out, "w", encoding="ascii")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()
        self.count = 0
        self.last_stamp = 0
        self.topic = f"{namespace.rstrip('/')}/audio_stamped"
        self.node.create_subscription(AudioDataStamped, "audio_stamped", self._on_audio, profile)

    def _on_audio(self, msg: AudioDataStamped) -> None:
        recv = time.time_ns()
        stamp = int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)
        data = bytes(msg.audio.data)
        line = json.dumps({"stamp": stamp, "bytes": len(data), "recv": recv,
                           "data": base64.b64encode(data).decode("ascii")})
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()
            self.count += 1
            self.last_stamp = stamp

    def wait_graph(self, what: str, count: int, timeout_s: float) -> dict[str, Any]:
        counter = (self.node.count_subscribers if what == "subscribers"
                   else self.node.count_publishers)
        deadline = time.monotonic() + timeout_s
        while counter(self.topic) < count:
            if time.monotonic() > deadline:
                return {"ok": False, "message": f"{counter(self.topic)} {what} of {count}"}
            time.sleep(0.02)
        return {"ok": True, "message": f"{counter(self.topic)} {what}"}

    def call(self, srv: Any, name: str, request: Any, timeout_s: float) -> Any:
        client = self.node.create_client(srv, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise TimeoutError(f"service {name} not available")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout_s
            while not future.done():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"service {name} did not answer")
                time.sleep(0.01)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def handle(self, words: list[str]) -> dict[str, Any]:  # noqa: PLR0911 - one per command
        cmd = words[0]
        if cmd == "ready":
            return {"ok": True, "message": ""}
        if cmd in ("subscribers", "publishers"):
            return self.wait_graph(cmd, int(words[1]), 30.0)
        if cmd in ("enable", "disable"):
            response = self.call(SetBool, "mic/enable", SetBool.Request(data=cmd == "enable"),
                                 30.0)
            return {"ok": bool(response.success), "message": response.message,
                    "sent_ns": time.time_ns()}
        if cmd == "start":
            deadline = time.monotonic() + 30.0
            while True:
                response = self.call(Trigger, "recorder/start", Trigger.Request(), 30.0)
                if response.success or "audio_info" not in response.message \
                        or time.monotonic() > deadline:
                    return {"ok": bool(response.success), "message": response.message}
                time.sleep(0.05)
        if cmd == "stop":
            response = self.call(Trigger, "recorder/stop", Trigger.Request(), 30.0)
            return {"ok": bool(response.success), "message": response.message}
        if cmd == "count":
            with self._lock:
                return {"ok": True, "message": "", "count": self.count,
                        "last_stamp": self.last_stamp}
        return {"ok": False, "message": f"unknown command {cmd!r}"}

    def close(self) -> None:
        with self._lock:
            self._out.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rclpy.init()
    probe = Probe(args.namespace, args.qos, args.depth, args.out)
    executor = SingleThreadedExecutor()
    executor.add_node(probe.node)
    done = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                break
            try:
                answer = probe.handle(words)
            except Exception as err:  # reported to the test, which fails
                answer = {"ok": False, "message": f"{type(err).__name__}: {err}"}
            print(json.dumps({"event": words[0], **answer}), flush=True)
        done.set()

    threading.Thread(target=commands, daemon=True).start()
    try:
        while not done.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        probe.close()
        executor.remove_node(probe.node)
        probe.node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
