"""Bring a comparison's state back from a device call, and put it in place for the next one.

A device call returns at most 8 files of up to 16 MiB (64 MiB in all) from ``$OUT``, and nothing on the machine
survives it. ``pack`` writes ``state.tgz`` (the folder without checkpoints and without files over ``--max-mb``)
plus each file matched by ``--keep`` (e.g. a shared critic's bf16 weights, benchmarks/ckpt_weights.py --critic)
as a file of its own, named after its path. ``unpack`` does the reverse into a folder to carry into the next call.

    python benchmarks/pack_state.py pack /tmp/w/credit $OUT --keep 'critics/*/checkpoint_last.pt'
    python benchmarks/pack_state.py unpack FILES_AT .devdata/cmp/credit

``pack`` refuses a kept file over the 16 MiB a device call returns (it would not come back).
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from pathlib import Path

#: the most one file may hold to come back from a device call
RETURN_LIMIT = 16 * 2**20
STATE = "state.tgz"
SEPARATOR = "__"  # a kept file's path, flattened into a name that comes back ('/' -> '__')


def pack(folder: Path, out: Path, keep: list[str], max_mb: float = 1.0) -> list[Path]:
    """``out/state.tgz`` of ``folder`` (no ``*.pt``, nothing over ``max_mb``) and each kept file; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    kept = sorted({p for pattern in keep for p in folder.glob(pattern) if p.is_file()})
    too_big = [f"{p} ({p.stat().st_size / 2**20:.1f} MiB)" for p in kept if p.stat().st_size > RETURN_LIMIT]
    if too_big:
        raise SystemExit(f"pack_state: over the 16 MiB a device call returns: {', '.join(too_big)}")

    def small(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.isfile() and (info.name.endswith(".pt") or info.size > max_mb * 2**20):
            return None
        return info

    written = [out / STATE]
    with tarfile.open(out / STATE, "w:gz") as tar:
        tar.add(folder, arcname=".", filter=small)
    for path in kept:
        target = out / str(path.relative_to(folder)).replace("/", SEPARATOR)
        target.write_bytes(path.read_bytes())
        written.append(target)
    return written


def unpack(files: Path, folder: Path) -> list[Path]:
    """``state.tgz`` and the kept files from ``files`` into ``folder``, each kept file back at its path."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(files / STATE, "r:gz") as tar:
        tar.extractall(folder, filter="data")
    restored = []
    for path in sorted(files.iterdir()):
        if path.name == STATE or SEPARATOR not in path.name:
            continue
        target = folder / path.name.replace(SEPARATOR, "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        restored.append(target)
    return restored


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="a folder -> state.tgz and the kept files")
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--keep", action="append", default=[], help="glob under the folder of a file to return as is")
    p.add_argument("--max-mb", type=float, default=1.0, help="files larger than this stay out of state.tgz")
    u = sub.add_parser("unpack", help="state.tgz and the kept files -> a folder")
    u.add_argument("files", type=Path)
    u.add_argument("folder", type=Path)
    args = ap.parse_args(argv)
    if args.command == "pack":
        for path in pack(args.folder, args.out, args.keep, args.max_mb):
            print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
    else:
        for path in unpack(args.files, args.folder):
            print(f"restored {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
