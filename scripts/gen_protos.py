#!/usr/bin/env python3
"""Regenerate the shipped descriptor sets (``*.desc``) from the ``.proto`` files.

The ``.proto`` files under ``kos_audio/protocols/`` are the source of truth; the package loads
the binary descriptor sets at run time (see ``kos_audio/protocols/_runtime.py``), so no
generated Python code and no protobuf version pin. Run this after editing any ``.proto``::

    python3 scripts/gen_protos.py            # rewrite every .desc
    python3 scripts/gen_protos.py --check    # exit 1 if a shipped .desc is stale or missing

Rule: every ``.proto`` that no other project ``.proto`` imports is an *entry* file. Each entry
``<dir>/<stem>.proto`` gets ``<dir>/<dir with '/' -> '_'>_<stem>.desc`` (so ``kos/sound.proto``
-> ``kos/kos_sound.desc``, ``resonite_io/v1/microphone.proto`` ->
``resonite_io/v1/resonite_io_v1_microphone.desc``), holding the entry file and its project
imports in dependency order, without ``google/protobuf/*`` (taken from the installed protobuf
at run time) and without source info (comments do not change the bytes).

Needs ``grpcio-tools`` (dev only). Bytes are stable for a given protoc; the shipped files were
made with the grpcio-tools named in the ``--check`` message when it fails.
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parents[1] / "kos_audio" / "protocols"
_WELL_KNOWN_PREFIX = "google/protobuf/"


def _imports(proto: Path) -> list[str]:
    """The import paths a .proto file names (a line-based read is enough for our files)."""
    out = []
    for line in proto.read_text(encoding="utf-8").splitlines():
        words = line.strip().split()
        if len(words) >= 2 and words[0] == "import":
            out.append(words[-1].rstrip(";").strip('"'))
    return out


def entry_files(root: Path = PROTO_ROOT) -> list[Path]:
    """All .proto files under ``root`` that no other .proto under ``root`` imports, sorted."""
    protos = sorted(root.rglob("*.proto"))
    imported = {imp for proto in protos for imp in _imports(proto)}
    return [p for p in protos if p.relative_to(root).as_posix() not in imported]


def desc_path(entry: Path, root: Path = PROTO_ROOT) -> Path:
    """Where the descriptor set of ``entry`` is shipped."""
    rel = entry.relative_to(root)
    prefix = "_".join(rel.parent.parts)
    name = f"{prefix}_{rel.stem}.desc" if prefix else f"{rel.stem}.desc"
    return entry.parent / name


def compile_entry(entry: Path, root: Path = PROTO_ROOT) -> bytes:
    """A serialized FileDescriptorSet for ``entry`` and its project imports.

    Raises:
        RuntimeError: protoc reported an error (its message is on stderr).
    """
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.desc"
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={root}",
                f"--proto_path={well_known}",
                "--include_imports",
                f"--descriptor_set_out={out}",
                entry.relative_to(root).as_posix(),
            ]
        )
        if rc != 0:
            raise RuntimeError(f"protoc failed on {entry} (exit {rc})")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    kept = [f for f in fds.file if not f.name.startswith(_WELL_KNOWN_PREFIX)]
    del fds.file[:]
    fds.file.extend(kept)
    return fds.SerializeToString()


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the .desc of each entry file; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument(
        "entries", nargs="*", type=Path, help="entry .proto files (default: all of them)"
    )
    args = parser.parse_args(argv)
    entries = [p.resolve() for p in args.entries] or entry_files()
    stale = []
    for entry in entries:
        target = desc_path(entry)
        fresh = compile_entry(entry)
        shown = target.relative_to(PROTO_ROOT.parents[1])
        if target.exists() and target.read_bytes() == fresh:
            print(f"up to date: {shown}")
        elif args.check:
            stale.append(shown)
            print(f"STALE: {shown}", file=sys.stderr)
        else:
            target.write_bytes(fresh)
            print(f"wrote: {shown}")
    if stale:
        import grpc_tools

        version = getattr(grpc_tools, "__version__", "?")
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("grpcio-tools")
        except Exception:  # metadata may be missing in odd installs; the hint is optional
            pass
        print(
            f"{len(stale)} descriptor set(s) differ from a compile with grpcio-tools {version}; "
            "run: python3 scripts/gen_protos.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
