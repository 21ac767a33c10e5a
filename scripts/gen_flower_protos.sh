#!/usr/bin/env bash
# Regenerates Sources/FrugalFlower/Proto/*.swift (committed) from the Flower 1.42.0 protocol.
#
# The flwr wheel ships no .proto sources, only `flwr/proto/*_pb2.py` with the serialized
# FileDescriptorProtos; this script collects those descriptors into one FileDescriptorSet and
# hands it to protoc (`--descriptor_set_in`), so the Swift code is generated from exactly the
# messages and the Fleet service of the pinned version. Only run when the pinned version changes.
#
# Needs: a Python with flwr==1.42.0 ($FLWR_VENV, made here when missing), grpc_tools for protoc
# (`python3 -m grpc_tools.protoc`), and the two plugins:
#   PROTOC_GEN_SWIFT       protoc-gen-swift of apple/swift-protobuf 1.39.0
#   PROTOC_GEN_GRPC_SWIFT  protoc-gen-grpc-swift-2 of grpc/grpc-swift-protobuf 2.4.1
set -euo pipefail
cd "$(dirname "$0")/.."
FLWR_VERSION=1.42.0
FLWR_VENV=${FLWR_VENV:-/tmp/frugal-flwr-venv}
PROTOC_GEN_SWIFT=${PROTOC_GEN_SWIFT:-/work/tools/sp/.build/release/protoc-gen-swift}
PROTOC_GEN_GRPC_SWIFT=${PROTOC_GEN_GRPC_SWIFT:-/work/tools/gsp/.build/release/protoc-gen-grpc-swift-2}
OUT=Sources/FrugalFlower/Proto

if ! "$FLWR_VENV/bin/python" -c "import flwr, sys; sys.exit(flwr.__version__ != '$FLWR_VERSION')" 2>/dev/null; then
    python3 -m venv "$FLWR_VENV"
    "$FLWR_VENV/bin/pip" install -q "flwr==$FLWR_VERSION"
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# The Fleet service and every file it imports, dependencies first.
"$FLWR_VENV/bin/python" - "$tmp/flwr.pb" <<'PY'
import sys
from google.protobuf import descriptor_pb2
from flwr.proto import fleet_pb2
out, seen = descriptor_pb2.FileDescriptorSet(), set()
def add(fd):
    if fd.name in seen:
        return
    seen.add(fd.name)
    for dep in fd.dependencies:
        add(dep)
    fd.CopyToProto(out.file.add())
add(fleet_pb2.DESCRIPTOR)
open(sys.argv[1], "wb").write(out.SerializeToString())
print("descriptors:", ", ".join(f.name for f in out.file))
PY

protos=()
for f in node heartbeat transport run fab error recorddict message fleet; do protos+=("flwr/proto/$f.proto"); done
rm -f "$OUT"/*.swift
# Messages of every file; the gRPC client of the Fleet service only.
python3 -m grpc_tools.protoc --descriptor_set_in="$tmp/flwr.pb" \
    --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" --swift_out="$OUT" --swift_opt=FileNaming=DropPath \
    "${protos[@]}"
python3 -m grpc_tools.protoc --descriptor_set_in="$tmp/flwr.pb" \
    --plugin=protoc-gen-grpc-swift-2="$PROTOC_GEN_GRPC_SWIFT" --grpc-swift-2_out="$OUT" \
    --grpc-swift-2_opt=FileNaming=DropPath,Client=true,Server=false \
    flwr/proto/fleet.proto
ls -l "$OUT"
