#!/usr/bin/env python3
"""Checks a run of scripts/flower_integration.sh: the global model after every round is the
FedAvg of what the Frugal devices sent.

    flower_check.py CASE_DIR ROUNDS DEVICES

CASE_DIR/server/global_round<r>.npz   the ServerApp's global arrays (r = 0: initial)
CASE_DIR/server/summary.json          Flower's aggregated train/evaluate metrics per round
CASE_DIR/dump/node<id>-run<run>-<r>/  what each device received and sent in round r (frugal --dump)

For every round r and every device: the arrays it received equal global_round<r-1> bit for bit;
global_round<r> equals sum_i sent_i * n_i / sum(n) computed as Flower's FedAvg computes it
(float32, `aggregate_arrayrecords`), bit for bit; the aggregated train_loss is the same weighted
mean of the devices' losses; the model changed; every device answered an unsupported "query" message with
an error reply that says so. Exit status 0 only when all of it holds.
"""

import glob
import json
import os
import sys

import numpy as np


def load_dump(path: str) -> dict:
    info = json.load(open(os.path.join(path, "reply.json"), encoding="utf-8"))
    arrays = {}
    for sub in ("received", "sent"):
        arrays[sub] = {name: np.load(os.path.join(path, sub, file), allow_pickle=False) for name, file in info["arrays"]}
    return {"info": info, **arrays}


def main() -> int:
    case, rounds, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    server = os.path.join(case, "server")
    failures = []

    def check(ok: bool, what: str) -> None:
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    globals_ = {}
    for r in range(rounds + 1):
        f = os.path.join(server, f"global_round{r}.npz")
        check(os.path.exists(f), f"the ServerApp saved the global model of round {r}")
        if os.path.exists(f):
            globals_[r] = dict(np.load(f, allow_pickle=False))
    summary = json.load(open(os.path.join(server, "summary.json"), encoding="utf-8"))

    for r in range(1, rounds + 1):
        dumps = [load_dump(p) for p in sorted(glob.glob(os.path.join(case, "dump", f"node*-run*-{r}")))]
        check(len(dumps) == devices, f"round {r}: {len(dumps)} devices trained (expected {devices})")
        if len(dumps) != devices or r not in globals_ or r - 1 not in globals_:
            continue
        previous, current = globals_[r - 1], globals_[r]
        for d in dumps:
            node = d["info"]["node"]
            same = set(d["received"]) == set(previous) and all(
                d["received"][k].dtype == previous[k].dtype and np.array_equal(d["received"][k], previous[k]) for k in previous)
            check(same, f"round {r}: node {node} received the global model of round {r - 1} exactly")
            moved = max(float(np.max(np.abs(d["sent"][k] - d["received"][k]))) for k in previous)
            check(moved > 0, f"round {r}: node {node} trained (largest change {moved:.3g})")
        # Flower's FedAvg (flwr/serverapp/strategy/strategy_utils.py: aggregate_arrayrecords).
        weights = [float(d["info"]["metrics"]["num-examples"]) for d in dumps]
        total = sum(weights)
        expected = {}
        for d, w in zip(dumps, weights):
            for k, v in d["sent"].items():
                expected[k] = v * (w / total) if k not in expected else expected[k] + v * (w / total)
        exact = set(expected) == set(current) and all(
            current[k].dtype == np.float32 and np.array_equal(current[k], expected[k]) for k in current)
        worst = max(float(np.max(np.abs(current[k] - expected[k]))) for k in current) if set(expected) == set(current) else float("inf")
        check(exact, f"round {r}: global model == FedAvg of the {devices} updates (weights {weights}), bit for bit (max |diff| {worst:.3g})")
        loss = sum(d["info"]["metrics"]["train_loss"] * w for d, w in zip(dumps, weights)) / total
        reported = summary["train_metrics"].get(str(r), {}).get("train_loss")
        check(reported is not None and abs(reported - loss) <= 1e-9 * max(1.0, abs(loss)),
              f"round {r}: Flower's aggregated train_loss {reported} == weighted mean of the devices' {loss}")
        evaluated = summary["evaluate_metrics"].get(str(r), {})
        check("eval_acc" in evaluated and 0.0 <= evaluated["eval_acc"] <= 1.0,
              f"round {r}: federated evaluation answered (eval_acc {evaluated.get('eval_acc')})")

    # The ServerApp sent each device a "query" message after the rounds: each must answer with an
    # error reply that says the type is not supported.
    replies = summary.get("query_replies", [])
    check(len(replies) == devices, f"{len(replies)} devices answered the unsupported 'query' message (expected {devices})")
    for r in replies:
        reason = r.get("error_reason") or ""
        check(r.get("error_code") == 2 and "message type 'query' is not supported" in reason,
              f"node {r.get('node')} answered 'query' with error {r.get('error_code')}: {reason[:110]}")

    if 0 in globals_ and rounds in globals_:
        change = max(float(np.max(np.abs(globals_[rounds][k] - globals_[0][k]))) for k in globals_[0])
        check(change > 0, f"the global model changed over {rounds} rounds (largest change {change:.3g})")
    print(f"{'PASS' if not failures else 'FAIL'}: {len(failures)} failed checks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
