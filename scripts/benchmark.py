#!/usr/bin/env python3
"""Run a benchmark: scripts/benchmark.py NAME [options]   (NAME: a module in benchmarks/).

Uses the project's venv (created by scripts/setup.sh); prints latency percentiles, CPU per
node process and sample loss. List them with: scripts/benchmark.py --list
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    venv_python = Path(os.environ.get("KOS_AUDIO_VENV", ROOT / ".venv")) / "bin" / "python"
    if Path(sys.prefix).resolve() != venv_python.parent.parent.resolve():
        if not venv_python.exists():
            print("no venv: run scripts/setup.sh first", file=sys.stderr)
            return 1
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    sys.path.insert(0, str(ROOT))
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py")
                   if p.stem not in {"__init__", "common", "bare_publisher", "bare_speaker",
                                     "bare_capture"})
    if len(sys.argv) < 2 or sys.argv[1] in {"-h", "--help", "--list"}:
        print(__doc__)
        print("benchmarks:", ", ".join(names))
        return 0
    if sys.argv[1] not in names:
        print(f"unknown benchmark {sys.argv[1]!r}; choose one of {', '.join(names)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{sys.argv[1]}")
    return int(module.main(sys.argv[2:]))


if __name__ == "__main__":
    sys.exit(main())
