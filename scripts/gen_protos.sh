#!/usr/bin/env bash
# Regenerates the committed Swift code of Sources/FrugalFederatedRPC/Protos/*.proto.
# Needs protoc (or `python3 -m grpc_tools.protoc`), protoc-gen-swift (swift-protobuf 1.39.0) and
# protoc-gen-grpc-swift-2 (grpc-swift-protobuf 2.4.1); the build and the tests never run this.
#   PROTOC_GEN_SWIFT=/path/protoc-gen-swift PROTOC_GEN_GRPC_SWIFT=/path/protoc-gen-grpc-swift-2 scripts/gen_protos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dir=Sources/FrugalFederatedRPC/Protos
out=Sources/FrugalFederatedRPC/Generated
swift_plugin=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift)}
grpc_plugin=${PROTOC_GEN_GRPC_SWIFT:-$(command -v protoc-gen-grpc-swift-2)}
if command -v protoc >/dev/null; then protoc=(protoc); else protoc=(python3 -m grpc_tools.protoc); fi
mkdir -p "$out"
"${protoc[@]}" -I "$dir" \
  --plugin=protoc-gen-swift="$swift_plugin" --swift_out="$out" --swift_opt=Visibility=Public \
  --plugin=protoc-gen-grpc-swift="$grpc_plugin" --grpc-swift_out="$out" \
  --grpc-swift_opt=Visibility=Public,Client=true,Server=true \
  "$dir"/federation.proto
echo "generated: $(ls "$out")"
