#!/usr/bin/env python3
"""Bandit reward statistics of `frugal peft run --json` files: per device class and configuration,
the number of (device, round) records, the mean and standard deviation of the full-depth loss
decrease on the probe batch (`progress`), of the device's seconds and of progress per second,
and the share of records in the first and second half of the run (non-stationarity).

usage: scripts/peft_rewards.py RUN.json [RUN.json ...]
"""
import json, math, sys
from collections import defaultdict

def stats(xs):
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    v = sum((x - m) ** 2 for x in xs) / max(len(xs) - 1, 1)
    return m, math.sqrt(v)

for path in sys.argv[1:]:
    with open(path) as f:
        run = json.load(f)
    rounds = len(run["rows"])
    groups = defaultdict(list)
    for row in run["rows"]:
        for d in row["devices"]:
            if d.get("configuration") is None:
                continue
            cls = "phone" if d["profile"].startswith("phone") else d["profile"]
            groups[(cls, d["configuration"])].append((row["round"], d["progress"], d["totalSeconds"], row["roundSeconds"]))
    print(f"{path}: {run['strategy']}, {rounds} rounds")
    print(f"{'class':>12} {'arm':>16} {'n':>4} {'late':>5} {'progress':>16} {'seconds':>8} {'prog/s':>16} {'prog/round s':>16}")
    for (cls, arm), recs in sorted(groups.items()):
        p = [r[1] for r in recs]
        s = [r[2] for r in recs]
        ps = [r[1] / r[2] for r in recs if r[2] > 0]
        pr = [r[1] / max(r[3], r[2]) for r in recs if r[2] > 0]
        late = sum(1 for r in recs if r[0] > rounds / 2)
        (mp, sp), (ms, _), (mr, sr), (mq, sq) = stats(p), stats(s), stats(ps), stats(pr)
        print(f"{cls:>12} {arm:>16} {len(recs):>4} {late:>5} {mp:8.4f}±{sp:<7.4f} {ms:8.2f} {mr:8.4f}±{sr:<7.4f} {mq:8.4f}±{sq:<7.4f}")
