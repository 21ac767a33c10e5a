#!/usr/bin/env bash
# Frugal devices in a real Flower federation: installs flwr==1.42.0 in a virtual environment,
# starts a SuperLink on 127.0.0.1 and the FedAvg ServerApp of scripts/flower_app (3 rounds), joins
# 2 Frugal devices (`frugal fl join --flower`, release build), and checks with
# scripts/flower_check.py that every round's global model is exactly the FedAvg of what the
# devices sent. Three cases: http (Flower 1.42's Fleet API), grpc (the SuperLink's legacy gRPC
# Fleet API, FLWR_INTERNAL_GRPC_FLEET_API=1) and auth (gRPC with TLS and --enable-supernode-auth:
# the devices' OpenSSH keys registered with `flwr supernode register`; a device without a key and
# one with an unregistered key must be refused with clear errors). Exit 0 only if all pass.
#
# Environment: FLWR_VENV (reuse a venv with flwr 1.42.0; default: a new one under the work
# directory), FLOWER_TRANSPORTS ("http grpc auth"), FLOWER_MODEL (mlp or lenet; mlp), FRUGAL_BIN
# (default .build/release/frugal, built when missing), FLOWER_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FLWR_VERSION=1.42.0
ROUNDS=3
DEVICES=2
MODEL=${FLOWER_MODEL:-mlp}
TRANSPORTS=${FLOWER_TRANSPORTS:-"http grpc auth"}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/frugal-flower.XXXXXX")
FLWR_VENV=${FLWR_VENV:-$WORK/venv}
FRUGAL=${FRUGAL_BIN:-$ROOT/.build/release/frugal}
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null || true
    done
    if [ "${FLOWER_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

say() { echo "[flower-integration] $*"; }

# 1. flwr in a virtual environment.
if ! "$FLWR_VENV/bin/python" -c "import flwr, sys; sys.exit(flwr.__version__ != '$FLWR_VERSION')" 2>/dev/null; then
    say "installing flwr==$FLWR_VERSION into $FLWR_VENV"
    python3 -m venv "$FLWR_VENV"
    "$FLWR_VENV/bin/pip" install -q "flwr==$FLWR_VERSION" numpy
fi
PY="$FLWR_VENV/bin/python"
say "flwr $("$PY" -c 'import flwr; print(flwr.__version__)'), numpy $("$PY" -c 'import numpy; print(numpy.__version__)')"

# 2. The device binary.
if [ ! -x "$FRUGAL" ]; then
    say "building frugal (release)"
    swift build -c release --product frugal
fi

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_tcp() {
    "$PY" - "$1" <<'PY'
import socket, sys, time
for _ in range(240):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(1)
PY
}

run_case() {
    # http: Flower 1.42's Fleet API; grpc: its legacy gRPC Fleet API; auth: gRPC with TLS and
    # --enable-supernode-auth, the devices' keys registered with `flwr supernode register`.
    local case=$1 dir=$WORK/$1
    mkdir -p "$dir/home" "$dir/dump" "$dir/server"
    local http_port grpc_port fleet_port transport=$case
    http_port=$(free_port); grpc_port=$(free_port)
    export FLWR_HOME=$dir/home
    # Arrays of 64 KiB chunks, so the model's weights span several ArrayChunk objects both ways.
    local env=(FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE=65536)
    local link_args=(--host 127.0.0.1 --port "$http_port" --disable-runtime-dependency-installation)
    local device_args=() security="insecure = true"
    if [ "$case" = http ]; then
        link_args+=(--insecure); fleet_port=$http_port
    else
        env+=(FLWR_INTERNAL_GRPC_FLEET_API=1)
        link_args+=(--fleet-api-address "127.0.0.1:$grpc_port")
        fleet_port=$grpc_port; transport=grpc
        if [ "$case" = auth ]; then
            "$PY" "$ROOT/scripts/flower_tls.py" "$dir/tls" 3
            link_args+=(--ssl-ca-certfile "$dir/tls/ca.pem" --ssl-certfile "$dir/tls/server.pem"
                        --ssl-keyfile "$dir/tls/server.key" --enable-supernode-auth)
            device_args+=(--root-certificates "$dir/tls/ca.pem")
            security="root-certificates = \"$dir/tls/ca.pem\""
        else
            link_args+=(--insecure)
        fi
    fi
    printf '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:%s"\n%s\n' \
        "$http_port" "$security" > "$FLWR_HOME/config.toml"
    say "[$case] SuperLink on 127.0.0.1:$http_port$([ "$transport" = grpc ] && echo ", gRPC Fleet API on $grpc_port")$([ "$case" = auth ] && echo " (TLS, SuperNode authentication)")"
    setsid env "${env[@]}" PATH="$FLWR_VENV/bin:$PATH" flower-superlink "${link_args[@]}" > "$dir/superlink.log" 2>&1 &
    PIDS+=($!)
    local link=$!
    wait_tcp "$http_port" || { tail -30 "$dir/superlink.log"; say "[$case] the SuperLink did not start"; return 1; }
    if [ "$transport" = grpc ]; then wait_tcp "$grpc_port" || { say "[$case] no gRPC Fleet API"; return 1; }; fi

    if [ "$case" = auth ]; then
        for ((i = 0; i < DEVICES; i++)); do
            PATH="$FLWR_VENV/bin:$PATH" flwr supernode register "$dir/tls/node$i.pub" local > "$dir/register$i.log" 2>&1 \
                || { cat "$dir/register$i.log"; say "[$case] flwr supernode register failed"; return 1; }
        done
        say "[$case] registered the keys of $DEVICES devices; a device without a key and one with an unregistered key must be refused"
        local out
        out=$(timeout 120 "$FRUGAL" fl join --flower "127.0.0.1:$fleet_port" --transport grpc "${device_args[@]}" --model "$MODEL" 2>&1) \
            && { echo "$out"; say "[$case] a device without a registered key was let in"; return 1; }
        echo "$out" > "$dir/refused-without-key.log"
        echo "$out" | grep -q "does not let nodes register themselves" \
            || { echo "$out"; say "[$case] unclear error for a device without a key"; return 1; }
        say "[$case] refused as expected: $(echo "$out" | grep -o 'the SuperLink has SuperNode authentication enabled[^:]*')"
        out=$(timeout 120 "$FRUGAL" fl join --flower "127.0.0.1:$fleet_port" --transport grpc "${device_args[@]}" --model "$MODEL" \
            --key "$dir/tls/node$DEVICES.key" 2>&1) && { echo "$out"; say "[$case] a device with an unregistered key was let in"; return 1; }
        echo "$out" > "$dir/refused-unregistered-key.log"
        echo "$out" | grep -q "its public key is not registered there" \
            || { echo "$out"; say "[$case] unclear error for an unregistered key"; return 1; }
        say "[$case] refused as expected: $(echo "$out" | grep -o 'the SuperLink did not activate this node[^.]*')"
    fi

    local devs=()
    for ((i = 0; i < DEVICES; i++)); do
        local key_args=()
        if [ "$case" = auth ]; then key_args=(--key "$dir/tls/node$i.key"); fi
        setsid "$FRUGAL" fl join --flower "127.0.0.1:$fleet_port" --transport "$transport" "${device_args[@]}" "${key_args[@]}" \
            --model "$MODEL" --partition "$i/$DEVICES" --limit-train $((3000 - 1000 * i)) --limit-test 500 --runs 1 \
            --poll-interval 1 --heartbeat-interval 10 --chunk-size 65536 --dump "$dir/dump" --json "$dir/device$i.json" \
            > "$dir/device$i.log" 2>&1 &
        PIDS+=($!)
        devs+=($!)
    done
    say "[$case] $DEVICES Frugal devices joining ($MODEL)"
    (cd "$dir" && env "${env[@]}" PATH="$FLWR_VENV/bin:$PATH" flwr run "$ROOT/scripts/flower_app" local \
        --run-config "num-server-rounds=$ROUNDS model=\"$MODEL\" out-dir=\"$dir/server\"") > "$dir/flwr-run.log" 2>&1 \
        || { cat "$dir/flwr-run.log"; say "[$case] flwr run failed"; return 1; }
    say "[$case] $(grep -o 'Successfully started run [0-9]*' "$dir/flwr-run.log" || cat "$dir/flwr-run.log")"

    # The devices leave once the run has finished; give them 15 minutes.
    local status=0 pid deadline=$((SECONDS + 900))
    for pid in "${devs[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 1; done
        if kill -0 "$pid" 2>/dev/null; then say "[$case] device $pid still running after 15 minutes"; status=1; continue; fi
        wait "$pid" || { say "[$case] device $pid exited with an error"; status=1; }
    done
    for ((i = 0; i < DEVICES; i++)); do sed "s/^/  device$i | /" "$dir/device$i.log" | tail -12; done
    kill -TERM -- "-$link" 2>/dev/null || true
    if [ $status -ne 0 ]; then tail -40 "$dir/superlink.log"; return 1; fi
    say "[$case] checking the global models against FedAvg of the devices' updates"
    "$PY" "$ROOT/scripts/flower_check.py" "$dir" "$ROUNDS" "$DEVICES" || { tail -40 "$dir/superlink.log"; return 1; }
}

failed=0
for t in $TRANSPORTS; do
    run_case "$t" || { failed=1; say "[$t] FAILED"; }
done
if [ $failed -ne 0 ]; then say "FAILED"; exit 1; fi
say "PASSED ($TRANSPORTS)"
