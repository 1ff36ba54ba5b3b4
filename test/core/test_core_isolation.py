"""The audio core must import neither rclpy, grpc nor sounddevice."""

import subprocess
import sys
import textwrap


def test_core_imports_without_ros_grpc_or_portaudio() -> None:
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"rclpy", "grpc", "sounddevice", "google", "rosbags"}:
                    raise ImportError(f"blocked: {name}")
                return None
        sys.meta_path.insert(0, Block())
        import kos_audio.core, kos_audio.core.capture, kos_audio.core.pacing
        import kos_audio.core.playback, kos_audio.core.sink_loop, kos_audio.core.mixer
        import kos_audio.core.recording, kos_audio.core.recording.recovery
        import kos_audio.backends, kos_audio.backends.tone_source, kos_audio.backends.file_source
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
