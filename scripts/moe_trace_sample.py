#!/usr/bin/env python3
"""Cuts a small committed sample out of the shared Qwen3-30B-A3B routing trace for FrugalMoE tests:
the first 4 layers, the last 2 prefill tokens and the first 10 decode tokens, same format.
Usage: scripts/moe_trace_sample.py [SRC] [DST]"""
import os, sys
src = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/frugal-data/moe-traces/qwen3-30b-a3b.route.csv")
dst = sys.argv[2] if len(sys.argv) > 2 else "Tests/FrugalMoETests/Fixtures/qwen3-sample.route.csv"
L = 4
head, rows = [], []
for line in open(src):
    if line.startswith("#"):
        if "n_layer=" in line:
            line = line.replace("n_layer=48", f"n_layer={L}")
        if line.startswith("# layer=") and int(line.split()[1].split("=")[1]) >= L:
            continue
        head.append(line)
    elif line.startswith("turn"):
        head.append(line)
    else:
        f = line.strip().split(",")
        if int(f[3]) < L:
            rows.append(f)
pre = sorted({int(f[2]) for f in rows if f[1] == "0"})[-2:]
dec = sorted({int(f[2]) for f in rows if f[1] == "1"})[:10]
keep = [f for f in rows if (f[1] == "0" and int(f[2]) in pre) or (f[1] == "1" and int(f[2]) in dec)]
with open(dst, "w") as out:
    out.writelines(head)
    for f in keep:
        out.write(",".join(f) + "\n")
print(dst, len(keep), "rows")
