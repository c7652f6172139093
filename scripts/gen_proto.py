"""Generate the Python code of the project's own gRPC services from proto/ (`make proto`).

The generated modules are checked in under `serving/protos/` so that the serving package ships
with them and a fresh checkout needs no build step. `--check` (and tests/grpc/test_proto_codegen.py)
regenerates into a scratch directory and fails when the checked-in code differs, so an edited
.proto cannot silently drift from the code that serves it.

protoc names Python imports after the .proto path (`from transfer_serving.v1 import ...`); the
modules live flat in `serving.protos`, so that one import line in the *_grpc module is rewritten.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
OUT_DIR = REPO / "serving" / "protos"
PACKAGE = "serving.protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    """Every .proto under root, relative to it (that relative path is the proto's import name)."""
    return sorted(p.relative_to(root) for p in root.rglob("*.proto"))


def _run_protoc(root: Path, out: Path, protos: list[Path]) -> None:
    """grpcio-tools' protoc in a child process: its bundled protobuf runtime crashes a process
    that has already loaded TensorFlow's (as a test session has)."""
    well_known = resources.files("grpc_tools") / "_proto"
    args = [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"-I{well_known}",
            f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *map(str, protos)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"protoc failed on {', '.join(map(str, protos))}:\n{done.stderr}")


def _flatten_imports(text: str, proto_packages: set[str]) -> str:
    """`from transfer_serving.v1 import x_pb2` -> `from serving.protos import x_pb2`."""
    for package in proto_packages:
        text = re.sub(rf"^from {re.escape(package)} import ", f"from {PACKAGE} import ", text,
                      flags=re.MULTILINE)
    return text


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> list[Path]:
    """Write the generated modules for every .proto under root flat into out_dir."""
    protos = proto_files(root)
    packages = {".".join(p.parent.parts) for p in protos if p.parent.parts}
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        _run_protoc(root, Path(scratch), protos)
        for generated in sorted(Path(scratch).rglob("*.py*")):
            if not generated.name.endswith(GENERATED_SUFFIXES):
                continue
            target = out_dir / generated.name
            target.write_text(_flatten_imports(generated.read_text(), packages))
            written.append(target)
    return written


def stale_files(out_dir: Path = OUT_DIR, root: Path = PROTO_ROOT) -> list[str]:
    """Names of generated files in out_dir that differ from a fresh generation (or are missing/extra)."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = {p.name: p.read_bytes() for p in generate(Path(scratch), root)}
    present = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    return sorted(name for name in fresh.keys() | present.keys() if fresh.get(name) != present.get(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the checked-in code is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("out of date with proto/ (run `make proto`):", *stale, sep="\n  ", file=sys.stderr)
            return 1
        print("generated code is up to date")
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for path in generate(OUT_DIR):
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
