#!/usr/bin/env bash
# Load test of the federated deployment on loopback (issue 8): one `frugal fl serve` (TLS) and
# 100 devices in one `frugal fl join --device-id 0-99` process, a 1.07M-parameter MLP
# (784-1024-256-10), FedAvg, every device selected every round, 10 rounds. Prints round latency
# percentiles (open → checkpointed), the server's peak resident memory, failures, and the anchor:
# the simulator (`frugal fl run`, same options) running the same rounds in one process.
#   bench/fl_load.sh [DEVICES] [ROUNDS]        (release binary: swift build -c release --product frugal)
# Traffic stays on 127.0.0.1; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FRUGAL_BIN:-$PWD/.build/release/frugal}
n=${1:-100}; rounds=${2:-10}
work=$(mktemp -d /tmp/fl-load.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2 -nodes -keyout "$work/server.key" \
  -out "$work/server.pem" -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
"$bin" fl enrol --file "$work/devices.json" --devices "0-$((n - 1))" --tokens-out "$work/tokens" >/dev/null
# Every device always available (a trace gives availability 1), 10 ms a sample, 100 Mbit/s.
{ echo "client_id,compute_ms_per_sample,bandwidth_kbps"; for d in $(seq 0 $((n - 1))); do echo "$d,10,100000"; done; } > "$work/trace.csv"
RUN=(--strategy fedavg --dataset synthetic --limit-train $((40 * n)) --model mlp:1024,256 --devices "$n" --per-round "$n"
     --rounds "$rounds" --partition iid --device-trace "$work/trace.csv" --local-steps 1 --batch 8 --lr 0.05 --seed 1
     --eval-every "$rounds")
python3 - "$work" "$port" "${RUN[@]}" <<'PY'
import json, sys
work, port, *run = sys.argv[1:]
json.dump({"listen": f"127.0.0.1:{port}", "tls": {"certificate": "server.pem", "key": "server.key"},
           "enrolment": "devices.json", "state": "state", "roundDeadlineSeconds": 600, "run": run,
           "json": "server.json", "metrics": "127.0.0.1:0"}, open(f"{work}/server.json.cfg", "w"))
PY
echo "load: $n devices, $rounds rounds, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
"$bin" fl serve --config "$work/server.json.cfg" --log-level warning > "$work/server.log" 2>&1 & spid=$!; pids+=("$spid")
"$bin" fl join --server "localhost:$port" --ca "$work/server.pem" --device-id "0-$((n - 1))" --tokens "$work/tokens" \
  --log-level warning --give-up 120 > "$work/devices.log" 2>&1 & jpid=$!; pids+=("$jpid")
peak_join=0
while kill -0 "$spid" 2>/dev/null; do
  r=$(awk '/VmHWM/ {print $2}' /proc/$jpid/status 2>/dev/null || echo 0); [ "${r:-0}" -gt "$peak_join" ] && peak_join=$r
  sleep 1
done
wait "$spid" || { echo "server failed:"; tail -20 "$work/server.log"; exit 1; }
wait "$jpid" || { echo "devices failed:"; tail -20 "$work/devices.log"; exit 1; }
deploy=$(python3 -c "import time; print(time.time() - $start)")
echo "load average after the deployment: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" fl run "${RUN[@]}" --json "$work/sim.json" > "$work/sim.log"
python3 - "$work" "$deploy" "$peak_join" "$n" <<'PY'
import json, sys, statistics
work, deploy, peak_join, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = json.load(open(f"{work}/server.json")); sim = json.load(open(f"{work}/sim.json"))
rows = s["result"]["rows"]; lat = sorted(s["roundSeconds"])
def pct(xs, p): return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
failures = sum(1 for r in rows for d in r["devices"] if not d["accepted"])
simr = sorted(w["totalSeconds"] for w in sim["wallTimes"])
print(f"rounds {len(rows)}, selected {[r['participants'] for r in rows]}, failures {failures}")
print(f"round latency (s): p50 {pct(lat,50):.2f}  p90 {pct(lat,90):.2f}  p99 {pct(lat,99):.2f}  max {lat[-1]:.2f}")
print(f"simulator, same rounds in one process (s): median {statistics.median(simr):.2f} (deployment / simulator {pct(lat,50)/statistics.median(simr):.2f}x)")
print(f"server peak RSS {s['peakResidentBytes']/1e6:.0f} MB; device process ({n} devices) peak RSS {peak_join*1024/1e6:.0f} MB")
print(f"traffic {rows[-1]['cumulativeTraffic']/1e6:.1f} MB; rows equal to the simulator's: {rows == sim['rows']}; wall {deploy:.1f} s")
PY
