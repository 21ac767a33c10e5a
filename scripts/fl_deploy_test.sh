#!/usr/bin/env bash
# Process-level test of the federated deployment (issue 8): a `frugal fl serve` process and
# four `frugal fl join` processes on loopback, with TLS (a certificate made here with openssl) and
# enrolment tokens. Checks, each against `frugal fl run` (the simulator) on the same options:
#   1. FedAvg over gRPC gives the simulator's rows (accuracy, bytes, clock) exactly;
#   2. Caesar with the server killed (SIGKILL) twice at arbitrary moments and restarted, and a
#      device that dies right after taking a task and is restarted from its state file: the run
#      completes with every round once and the simulator's rows;
#   3. a device that dies in round 2 and never returns: the rounds close by their deadline;
#   4. an unenrolled token, a revoked device and a device using another's token are refused;
#   5. DropPEFT (with a personal layer; the server SIGKILLed mid-round and restarted) and federated
#      LoRA on `--model tiny` (a generated transformer task) give `frugal peft run`'s rows exactly
#      (but for measured peak memory).
# Needs the release binary (swift build -c release --product frugal), openssl and python3.
# Sends traffic only to 127.0.0.1; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FRUGAL_BIN:-$PWD/.build/release/frugal}
[ -x "$bin" ] || { echo "fl_deploy_test: $bin not built (swift build -c release --product frugal)"; exit 1; }
work=$(mktemp -d /tmp/fl-deploy.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
passed=0; failed=0
ok() { echo "  ok: $*"; passed=$((passed + 1)); }
bad() { echo "  FAILED: $*"; failed=$((failed + 1)); }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

echo "== setup: certificate, enrolment"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2 -nodes -keyout "$work/server.key" \
  -out "$work/server.pem" -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
"$bin" fl enrol --file "$work/devices.json" --devices 0-4 --tokens-out "$work/tokens" >/dev/null
"$bin" fl enrol --file "$work/devices.json" --devices 4 --revoke >/dev/null

RUN_COMMON=(--dataset synthetic --limit-train 1200 --devices 4 --per-round 4 --partition iid --local-steps 4 --batch 16 --lr 0.1 --seed 3)

# config NAME STRATEGY ROUNDS DEADLINE → writes $work/NAME.json
config() {
  local name=$1 strategy=$2 rounds=$3 deadline=$4 port
  port=$(free_port)
  python3 - "$work" "$name" "$strategy" "$rounds" "$deadline" "$port" "${RUN_COMMON[@]}" <<'PY'
import json, sys
work, name, strategy, rounds, deadline, port, *common = sys.argv[1:]
cfg = {"listen": f"127.0.0.1:{port}", "tls": {"certificate": "server.pem", "key": "server.key"},
       "enrolment": "devices.json", "state": f"{name}-state", "roundDeadlineSeconds": float(deadline),
       "run": ["--strategy", strategy, "--rounds", rounds] + common, "json": f"{name}-server.json"}
json.dump(cfg, open(f"{work}/{name}.json", "w"))
PY
  echo "$port"
}

# serve NAME / join NAME PORT DEVICE [VAR=value...]: start in the background; the pid is in $last.
serve() { "$bin" fl serve --config "$work/$1.json" --log-level warning >>"$work/$1-server.log" 2>&1 & last=$!; pids+=("$last"); }
join() {
  local name=$1 port=$2 d=$3; shift 3
  env "$@" "$bin" fl join --server "localhost:$port" --ca "$work/server.pem" --device-id "$d" \
    --token-file "$work/tokens/device-$d.token" --state "$work/$name-dev$d.state" --log-level warning \
    --give-up 60 >>"$work/$name-dev$d.log" 2>&1 & last=$!; pids+=("$last")
}
finish() {  # finish PID WHAT: wait (bounded) for a process; 0 if it exited 0
  local rc=0
  timeout 300 tail --pid="$1" -f /dev/null || true
  wait "$1" || rc=$?
  [ "$rc" -eq 0 ] && ok "$2" || bad "$2: exit $rc"
}
wait_for() {  # wait_for SECONDS CMD...: poll until CMD succeeds
  local limit=$1; shift
  for _ in $(seq 1 $((limit * 5))); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 0.2; done
  return 1
}
completed() { "$bin" fl status --server "localhost:$1" --ca "$work/server.pem" --json "$work/status.json" >/dev/null 2>&1 &&
  python3 -c "import json,sys; s=json.load(open('$work/status.json')); sys.exit(0 if s['completedRounds']>=$2 else 1)"; }
same_rows() {  # same_rows SERVER_JSON SIM_JSON: rows equal (everything but wall-clock times)
  python3 - "$1" "$2" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["result"]["rows"]; b = json.load(open(sys.argv[2]))["rows"]
if a != b:
    for x, y in zip(a, b):
        if x != y: print("first differing round:", x["round"], {k: (x[k], y[k]) for k in x if x[k] != y[k] and k != "devices"}); break
    sys.exit(1)
print(f"    {len(a)} rounds equal; final accuracy {a[-1]['accuracy']}, traffic {a[-1]['cumulativeTraffic']} bytes")
PY
}

same_task_rows() {  # same_task_rows SERVER_JSON SIM_JSON: rows equal but for the measured peak memory
  # (a device process's tensor peak depends on what else that process holds; the estimate used to
  # configure devices, memoryBytes, is the server's and is compared)
  python3 - "$1" "$2" <<'PY'
import json, sys
def strip(rows):
    for r in rows:
        r.pop("peakMemoryBytes")
        for d in r["devices"]: d.pop("peakMemoryBytes")
    return rows
a = strip(json.load(open(sys.argv[1]))["result"]["rows"]); b = strip(json.load(open(sys.argv[2]))["rows"])
if a != b:
    for x, y in zip(a, b):
        if x != y: print("first differing round:", x["round"], {k: (x[k], y[k]) for k in x if x[k] != y[k]}); break
    sys.exit(1)
print(f"    {len(a)} rounds equal; final accuracy {a[-1]['accuracy']}, traffic {a[-1]['cumulativeTraffic']} bytes")
PY
}

echo "== 1. FedAvg: server + 4 device processes vs the simulator"
port=$(config fedavg fedavg 3 60)
"$bin" fl run --strategy fedavg --rounds 3 "${RUN_COMMON[@]}" --json "$work/fedavg-sim.json" >/dev/null
serve fedavg; spid=$last
dpids=(); for d in 0 1 2 3; do join fedavg "$port" $d; dpids+=("$last"); done
finish "$spid" "server finished"
for p in "${dpids[@]}"; do finish "$p" "device finished"; done
same_rows "$work/fedavg-server.json" "$work/fedavg-sim.json" && ok "FedAvg over gRPC equals the simulator" || bad "FedAvg rows differ"

echo "== 2. Caesar: server killed twice and restarted, a device dies mid-round and restarts"
port=$(config caesar caesar 6 60)
"$bin" fl run --strategy caesar --rounds 6 "${RUN_COMMON[@]}" --json "$work/caesar-sim.json" >/dev/null
serve caesar; spid=$last
dpids=(); for d in 0 1 2; do join caesar "$port" $d; dpids+=("$last"); done
join caesar "$port" 3 FRUGAL_FL_TEST_DIE_IN_ROUND=2
rc=0; timeout 300 tail --pid="$last" -f /dev/null || true; wait "$last" || rc=$?
[ "$rc" -eq 3 ] && ok "device 3 died right after taking round 2's task" || bad "device 3 exit $rc, expected 3"
join caesar "$port" 3; dpids+=("$last")          # back, from its state file, while round 2 is still open
wait_for 120 completed "$port" 2 || bad "round 2 never completed"
sleep 0.$((RANDOM % 9)); kill -9 "$spid"; wait "$spid" 2>/dev/null || true
ok "server killed (SIGKILL) with $(python3 -c "import json; print(json.load(open('$work/status.json'))['completedRounds'])") rounds done"
serve caesar; spid=$last
wait_for 120 completed "$port" 4 || bad "round 4 never completed after the restart"
sleep 0.$((RANDOM % 9)); kill -9 "$spid"; wait "$spid" 2>/dev/null || true
ok "server killed again (SIGKILL)"
serve caesar; spid=$last
finish "$spid" "restarted server finished the run"
for p in "${dpids[@]}"; do finish "$p" "device finished"; done
[ "$(grep -cE 'rounds [1-9]/6 done' "$work/caesar-server.log" || true)" -ge 2 ] && ok "the server resumed from its checkpoint twice" || bad "no resume logged"
same_rows "$work/caesar-server.json" "$work/caesar-sim.json" && ok "Caesar after kills and restarts equals the simulator (no round lost or repeated)" || bad "Caesar rows differ"

echo "== 3. a device dies in round 2 for good: rounds close by their deadline"
port=$(config dropout fedavg 3 4)
serve dropout; spid=$last
for d in 0 1 2; do join dropout "$port" $d; done
join dropout "$port" 3 FRUGAL_FL_TEST_DIE_IN_ROUND=2
finish "$spid" "server finished without device 3"
python3 - "$work/dropout-server.json" <<'PY' && ok "device 3 missing from round 2 on; its rounds closed by the deadline" || bad "dropout rows unexpected"
import json, sys
rows = json.load(open(sys.argv[1]))["result"]["rows"]
assert len(rows) == 3, len(rows)
missing = 0
for r in rows:
    for d in r["devices"]:
        if d["device"] == 3 and r["round"] >= 2:
            assert d["rejection"] == "no update before the round closed", d
            missing += 1
        else:
            assert d["accepted"], (r["round"], d)
assert missing >= 1, "device 3 was never selected after round 1"
PY

echo "== 4. credentials"
port=$(config auth fedavg 1 60)
serve auth; spid=$last
wait_for 60 completed "$port" 0 || bad "auth server did not start"
refused() {  # refused EXPECTED_TEXT join-args...
  local expect=$1; shift
  if out=$(timeout 60 "$bin" fl join --server "localhost:$port" --ca "$work/server.pem" --give-up 5 "$@" 2>&1); then
    bad "join $* was not refused"; else echo "$out" | grep -q "$expect" && ok "refused: $expect" || bad "join $*: $(echo "$out" | tail -1)"; fi
}
refused "unknown credentials" --device-id 0 --token 0123456789abcdef
refused "revoked" --device-id 4 --token-file "$work/tokens/device-4.token"
refused "cannot act for device 1" --device-id 1 --token-file "$work/tokens/device-0.token"
if "$bin" fl join --server "localhost:$port" --plaintext --device-id 0 --token-file "$work/tokens/device-0.token" --give-up 3 >/dev/null 2>&1; then
  bad "a plaintext client reached a TLS server"; else ok "a plaintext client cannot talk to the TLS server"; fi
kill -9 "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true

echo "== 5. DropPEFT and federated LoRA (peft run options, --model tiny) vs peft run"
PEFT_COMMON=(--model tiny --devices 4 --per-round 4 --rounds 4 --local-steps 3 --batch 8 --limit-test 40 --partition iid --seed 2)
for spec in "droppeft --personal-layers 1" "fedlora"; do
  name=peft-${spec%% *}
  read -r -a sargs <<<"--strategy $spec"
  port=$(free_port)
  python3 - "$work" "$name" "$port" "${sargs[@]}" "${PEFT_COMMON[@]}" <<'PY'
import json, sys
work, name, port, *run = sys.argv[1:]
json.dump({"listen": f"127.0.0.1:{port}", "tls": {"certificate": "server.pem", "key": "server.key"},
           "enrolment": "devices.json", "state": f"{name}-state", "roundDeadlineSeconds": 120.0,
           "task": "peft", "run": run, "json": f"{name}-server.json"}, open(f"{work}/{name}.json", "w"))
PY
  "$bin" peft run "${sargs[@]}" "${PEFT_COMMON[@]}" --json "$work/$name-sim.json" >"$work/$name-sim.log" 2>&1 || bad "$name: peft run failed"
  serve "$name"; spid=$last
  dpids=(); for d in 0 1 2; do join "$name" "$port" $d; dpids+=("$last"); done
  if [ "$name" = peft-droppeft ]; then
    # Device 3 dies right after taking its task of round 2 (or later): that round stays open (all 4
    # devices are selected, the deadline is long); the server is SIGKILLed there and restarted,
    # then device 3 comes back from its state file. The server resumes (bandits too).
    join "$name" "$port" 3 FRUGAL_FL_TEST_DIE_IN_ROUND=2
    rc=0; timeout 300 tail --pid="$last" -f /dev/null || true; wait "$last" || rc=$?
    [ "$rc" -eq 3 ] && ok "$name: device 3 died right after taking a task" || bad "$name: device 3 exit $rc, expected 3"
    kill -9 "$spid"; wait "$spid" 2>/dev/null || true
    serve "$name"; spid=$last
  fi
  join "$name" "$port" 3; dpids+=("$last")
  finish "$spid" "$name server finished"
  for p in "${dpids[@]}"; do finish "$p" "$name device finished"; done
  if [ "$name" = peft-droppeft ]; then
    grep -qE 'rounds [1-9]/4 done' "$work/$name-server.log" && ok "$name: the killed server resumed from its checkpoint" || bad "$name: no resume logged"
  fi
  same_task_rows "$work/$name-server.json" "$work/$name-sim.json" && ok "$spec over gRPC equals peft run" || bad "$name rows differ"
done

echo "fl_deploy_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
