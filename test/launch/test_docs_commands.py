"""The ``ros2 ...`` command lines of README.md and docs/*.md, run as written.

Every command line inside a fenced code block whose command is ``ros2`` is parsed from the files
(``\\`` continuations joined, ``# comments`` dropped, leading ``VAR=value`` assignments kept), so
the docs cannot drift from the code. Each is run in a context that fits it:

- ``ros2 service call`` / ``ros2 topic pub``: against a running
  ``ros2 launch kos_audio kos_audio.launch.py mic_source:=tone sink:=null`` (in this test
  process's own ROS domain, root namespace, as the docs' absolute names expect), in the order the
  docs give them; exit 0 and, where there is a response, ``success=True``.
- ``ros2 run kos_audio <node> --list-devices`` / ``--help``: run directly, exit 0.
- ``ros2 run kos_audio bag_to_wav``: run to completion on a small bag, exit 0, file written.
- ``ros2 run`` of a node and ``ros2 launch``: started in a session of their own, waited for (the
  nodes they start visible in the graph), then Ctrl-C (SIGINT to the process group): exit 0, no
  traceback, nothing left running.

A command none of these fits fails :func:`test_every_doc_command_is_classified`: a new doc line
must be handled here, not silently skipped. The substitutions the test makes are all in
:data:`SUBSTITUTIONS` and :func:`prepare`; no command ever reaches a robot's address.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kos_testing.ros import wait_until
from ros2_helpers import (
    ROOT,
    Session,
    require_ros2,
    ros2,
    ros2_env,
    wait_answering,
    wait_for_nodes,
    wait_recorder_has_format,
)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


@dataclass
class DocCommand:
    """One ``ros2`` command line of the docs."""

    where: str  # file:line
    env: dict[str, str]
    argv: list[str]  # argv[0] == "ros2" for the commands this test handles

    @property
    def text(self) -> str:
        return " ".join([*(f"{k}={v}" for k, v in self.env.items()), *self.argv])


def strip_comment(line: str) -> str:
    """``line`` without a shell ``# comment`` (a ``#`` starting a word, outside quotes)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def shell_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The logical lines inside fenced code blocks: (first line number, text)."""
    fenced = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced, pending = not fenced, []
            continue
        if not fenced:
            continue
        if not pending:
            start = number
        text = strip_comment(line).rstrip()
        if text.endswith("\\"):
            pending.append(text[:-1])
            continue
        pending.append(text)
        yield start, " ".join(part.strip() for part in pending)
        pending = []


def doc_commands() -> list[DocCommand]:
    """Every command line of the docs that runs ``ros2`` (or mentions it as a word)."""
    found = []
    for path in DOCS:
        for number, line in shell_lines(path):
            try:
                words = shlex.split(line)
            except ValueError:  # code in another language, e.g. an unbalanced quote
                words = line.split()
            if "ros2" not in words:
                continue
            env = {}
            while words and ENV_ASSIGNMENT.fullmatch(words[0]):
                key, _, value = words.pop(0).partition("=")
                env[key] = value
            found.append(DocCommand(f"{path.relative_to(ROOT)}:{number}", env, words))
    return found


COMMANDS = doc_commands()

# ------------------------------------------------------------------------ classification

#: Executables and the node each starts (its default name).
NODE_EXECUTABLES = {"mic_node": "mic", "speaker_node": "speaker", "recorder_node": "recorder"}
#: Launch files and the nodes they start (virtual_mic's resonite_ears with listen:=true only).
LAUNCH_NODES = {
    "kos_audio.launch.py": ["mic", "speaker", "recorder"],
    "mic.launch.py": ["mic"],
    "speaker.launch.py": ["speaker"],
    "recorder.launch.py": ["recorder"],
    "kos_bridge.launch.py": ["mic", "speaker"],
    "virtual_mic.launch.py": ["virtual_mic"],
}


def classify(cmd: DocCommand) -> str | None:
    """``call`` | ``direct`` | ``oneshot`` | ``long``, or None: this test cannot run it."""
    argv = cmd.argv
    kind = None
    if argv[:1] == ["ros2"] and argv[1:3] in (["service", "call"], ["topic", "pub"]):
        kind = "call"
    elif argv[:3] == ["ros2", "run", "kos_audio"] and len(argv) >= 4:
        own = argv[4:argv.index("--ros-args")] if "--ros-args" in argv else argv[4:]
        if argv[3] == "bag_to_wav":
            kind = "oneshot"
        elif argv[3] in NODE_EXECUTABLES and own in (["--list-devices"], ["--help"]):
            kind = "direct"
        elif argv[3] in NODE_EXECUTABLES and not own:
            kind = "long"
    elif argv[:3] == ["ros2", "launch", "kos_audio"] and len(argv) >= 4 \
            and argv[3] in LAUNCH_NODES:
        kind = "long"
    return kind


def test_every_doc_command_is_classified() -> None:
    assert len(COMMANDS) >= 20, [c.text for c in COMMANDS]  # the parser finds them
    unknown = [f"{c.where}: {c.text}" for c in COMMANDS if classify(c) is None]
    assert not unknown, "doc commands this test does not know how to run:\n" + "\n".join(
        unknown)


# -------------------------------------------------------------------------- substitutions

#: Text of the docs replaced before running, and why:
SUBSTITUTIONS = {
    # KOS daemon addresses (this machine's default and a robot's LAN address) -> the KOS test
    # server on 127.0.0.1. Nothing is ever sent to the addresses in the docs.
    "localhost:50051": "{kos}",
    "10.33.10.1:50051": "{kos}",
    # A Resonite IO socket path -> the Resonite IO test server's socket.
    "/home/me/.resonite-io/resonite-4242.sock": "{resonite_socket}",
    # Namespaces -> one of this test alone.
    "namespace:=robot1": "namespace:={ns}",
    "__ns:=/robot": "__ns:=/{ns}",
    # Paths written -> temporary ones (speech.flac is relative: the working dir is temporary).
    "output_dir:=~/recordings": "output_dir:={tmp}/recordings",
    "my_bag": "{bag}",
}
#: device:=USB (a USB sound card) -> a device of the private PulseAudio server, per executable:
#: the virtual microphone for mic_node, the virtual speaker for speaker_node.
USB_DEVICE = {"mic_node": "mic", "speaker_node": "speaker"}
# Also, without text in the docs to replace:
# - a KOS command with no address uses the default localhost:50051: the test server's address
#   is added (kos_address:= for kos_bridge.launch.py, -p kos.address:= for a node).
# - Resonite commands with no socket find it as documented, in ~/.resonite-io: HOME is a
#   temporary directory holding the test server's socket there.
# - Every command runs with HOME a temporary directory (recordings, ~/.ros/log) and, for
#   device nodes (kos_audio.launch.py and speaker.launch.py with their default device sink and
#   source), the private PulseAudio server's default source "mic" and sink "speaker".


@dataclass
class Context:
    """What substitutions point at."""

    kos: str
    resonite_socket: Path
    ns: str
    tmp: Path
    bag: Path
    home: Path
    values: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = {"kos": self.kos, "resonite_socket": str(self.resonite_socket),
                       "ns": self.ns, "tmp": str(self.tmp), "bag": str(self.bag)}


PRIVATE = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b")


def prepare(cmd: DocCommand, ctx: Context) -> tuple[list[str], dict[str, str]]:
    """The command line to run, and its environment, with the substitutions applied."""
    def sub(word: str) -> str:
        for old, new in SUBSTITUTIONS.items():
            if old == "my_bag":
                word = new.format(**ctx.values) if word == old else word
            else:
                word = word.replace(old, new.format(**ctx.values))
        return word

    argv = [sub(w) for w in cmd.argv]
    env = {k: sub(v) for k, v in cmd.env.items()}
    if argv[1] == "run" and argv[3] in USB_DEVICE:
        argv = [w.replace("device:=USB", f"device:={USB_DEVICE[argv[3]]}") for w in argv]
    if argv[1] == "launch" and argv[3] == "kos_bridge.launch.py" \
            and not any(w.startswith("kos_address:=") for w in argv):
        argv.append(f"kos_address:={ctx.kos}")
    if argv[1] == "run" and ("sink:=kos" in argv or "source:=kos" in argv) \
            and not any(w.startswith("kos.address:=") for w in argv):
        argv += ["-p", f"kos.address:={ctx.kos}"]
    for word in [*argv, *env.values()]:  # never a LAN address, never the real KOS port
        assert "50051" not in word, (cmd.text, argv)
        for address in PRIVATE.findall(word):
            ip = ipaddress.ip_address(address)
            assert ip.is_loopback, f"{cmd.where}: {address} left in {argv}"
    return argv, env


# -------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _ros2_cli() -> None:
    require_ros2()


@pytest.fixture
def ctx(tmp_path_factory: pytest.TempPathFactory, namespace: str,
        make_kos_server: Callable[..., Any], make_resonite_server: Callable[..., Any]
        ) -> Context:
    home = tmp_path_factory.mktemp("h")  # short: it holds the Resonite socket
    work = tmp_path_factory.mktemp("cmd")
    kos = make_kos_server()
    (home / ".resonite-io").mkdir()
    resonite = make_resonite_server(directory=home / ".resonite-io")
    return Context(kos=kos.address, resonite_socket=resonite.socket_path,
                   ns=namespace.strip("/"), tmp=work, bag=make_bag(work / "my_bag"), home=home)


def make_bag(path: Path) -> Path:
    """A small rosbag2 (sqlite3) of /mic/audio_info and 1 s of /mic/audio_stamped."""
    from audio_common_msgs.msg import AudioData, AudioDataStamped
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer

    from kos_audio.core import AudioFormat, SampleFormat
    from kos_audio.ros.messages import audio_info
    from kos_audio.tools.bag_to_wav import AUDIO_DATA_STAMPED, AUDIO_INFO, audio_typestore

    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    store = audio_typestore()
    t0 = time.time_ns()
    with Writer(path, version=9) as writer:
        info = writer.add_connection("/mic/audio_info", AUDIO_INFO, typestore=store)
        audio = writer.add_connection("/mic/audio_stamped", AUDIO_DATA_STAMPED, typestore=store)
        writer.write(info, t0, bytes(serialize_message(audio_info(fmt))))
        for i in range(50):  # 50 chunks of 20 ms
            msg = AudioDataStamped()
            stamp = t0 + i * 20_000_000
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            msg.audio = AudioData(data=bytes(range(256)) * 2 + bytes(128))
            writer.write(audio, stamp + 1000, bytes(serialize_message(msg)))
    return path


# ----------------------------------------------------------------------------------- tests


CALLS = [c for c in COMMANDS if classify(c) == "call"]
OTHERS = [c for c in COMMANDS if classify(c) in ("direct", "oneshot", "long")]


#: What a node logs when a message published by a doc command reaches it.
TOPIC_EFFECTS = {"/interrupt": "(interrupt topic)"}


def test_doc_service_and_topic_commands(ros: Any, ctx: Context) -> None:
    assert CALLS
    env = ros2_env(ctx.home)
    stack = Session(["ros2", "launch", "kos_audio", "kos_audio.launch.py", "mic_source:=tone",
                     "sink:=null"], env=env)
    with stack:
        wait_for_nodes(ros, ["/mic", "/speaker", "/recorder"], session=stack)
        wait_recorder_has_format(ros, "/recorder")
        failures = []
        for cmd in CALLS:
            argv, extra = prepare(cmd, ctx)
            done = ros2(*argv[1:], env={**env, **extra}, cwd=ctx.tmp)
            if done.returncode != 0 or "Traceback" in done.stdout or (
                    "response:" in done.stdout and "success=True" not in done.stdout):
                failures.append(f"{cmd.where}: {' '.join(argv)} -> exit {done.returncode}\n"
                                f"{done.stdout}")
            topic = next((w for w in argv[3:] if not w.startswith("-")), "")
            effect = TOPIC_EFFECTS.get(topic) if argv[1:3] == ["topic", "pub"] else None
            if effect is not None:  # the message arrived: the node says what it did
                wait_until(lambda e=effect: e in stack.output, 10, f"{effect!r} after {argv}")
        stack.assert_clean_ctrl_c()
    assert not failures, "\n".join(failures)


def expected_nodes(argv: list[str]) -> list[str]:
    """Fully qualified names of the nodes a long-running command starts."""
    if argv[1] == "run":
        namespace = next((w.removeprefix("__ns:=") for w in argv if w.startswith("__ns:=")),
                         "")
        return [f"{namespace.rstrip('/')}/{NODE_EXECUTABLES[argv[3]]}"]
    args = dict(w.split(":=", 1) for w in argv[4:] if ":=" in w)
    namespace = args.get("namespace", "")
    namespace = f"/{namespace.strip('/')}" if namespace else ""
    nodes = list(LAUNCH_NODES[argv[3]])
    if argv[3] == "virtual_mic.launch.py" and args.get("listen") == "true":
        nodes.append("resonite_ears")
    return [f"{namespace}/{n}" for n in nodes]


#: Where a command opens a sound device: (argument, its default) per executable/launch file.
DEVICE_ARGUMENTS = {
    "mic_node": [("source", "tone")],
    "speaker_node": [("sink", "device")],
    "mic.launch.py": [("source", "device")],
    "speaker.launch.py": [("sink", "device")],
    "kos_audio.launch.py": [("mic_source", "device"), ("sink", "device")],
}


def uses_device(cmd: DocCommand) -> bool:
    """Whether ``cmd`` opens a PortAudio device (or lists them)."""
    if classify(cmd) == "direct":
        return True
    args = dict(w.split(":=", 1) for w in cmd.argv[4:] if ":=" in w)
    return any(args.get(name, default) == "device"
               for name, default in DEVICE_ARGUMENTS.get(cmd.argv[3], []))


@pytest.mark.parametrize("cmd", [
    pytest.param(c, id=f"{c.where} {c.text}"[:120],
                 marks=[pytest.mark.device] if uses_device(c) else [])
    for c in OTHERS])
def test_doc_command(cmd: DocCommand, ros: Any, ctx: Context,
                     request: pytest.FixtureRequest) -> None:
    if uses_device(cmd):  # the private PulseAudio server's devices (default: mic, speaker)
        request.getfixturevalue("pulse")
    argv, extra = prepare(cmd, ctx)
    env = {**ros2_env(ctx.home), **extra}
    kind = classify(cmd)
    if kind == "direct":
        done = ros2(*argv[1:], env=env, cwd=ctx.tmp)
        assert done.returncode == 0, done.stdout
        assert "Traceback" not in done.stdout, done.stdout
        return
    if kind == "oneshot":  # bag_to_wav
        done = ros2(*argv[1:], env=env, cwd=ctx.tmp)
        assert done.returncode == 0, done.stdout
        out = argv[argv.index("-o") + 1] if "-o" in argv else None
        assert out is not None and (ctx.tmp / out).stat().st_size > 0, done.stdout
        return
    assert kind == "long"
    nodes = expected_nodes(argv)
    with Session(argv, env=env, cwd=ctx.tmp) as run:
        wait_for_nodes(ros, nodes, session=run)
        for node in nodes:  # the graph may still list an earlier command's node of that name
            wait_answering(ros, node, session=run)
        run.assert_clean_ctrl_c()
