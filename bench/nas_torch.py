#!/usr/bin/env python3
"""PyTorch anchor for `frugal nas bench`: the DARTS supernet (model_search.py of the DARTS code,
first-order), same sizes, batch and steps. Times a weight step (forward, backward, grad clip 5,
SGD momentum 0.9 wd 3e-4) and a first-order search step (alpha step with Adam + weight step).

  python3 bench/nas_torch.py --channels 8 --cells 5 --input-size 16 --batch 32 --json out.json

--skip-none drops the `none` op from the weighted sum (as Frugal does: its output and gradient are
zero); by default the `none` op is computed as in the DARTS code (x.mul(0.)).
"""
import argparse, json, time, torch, torch.nn as nn, torch.nn.functional as F

PRIMS = ['none', 'max_pool_3x3', 'avg_pool_3x3', 'skip_connect', 'sep_conv_3x3', 'sep_conv_5x5', 'dil_conv_3x3', 'dil_conv_5x5']

class ReLUConvBN(nn.Sequential):
    def __init__(s, ci, co, k, st, p, affine=False):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(ci, co, k, st, p, bias=False), nn.BatchNorm2d(co, affine=affine))
class DilConv(nn.Sequential):
    def __init__(s, ci, co, k, st, p, d, affine=False):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(ci, ci, k, st, p, dilation=d, groups=ci, bias=False),
                         nn.Conv2d(ci, co, 1, bias=False), nn.BatchNorm2d(co, affine=affine))
class SepConv(nn.Sequential):
    def __init__(s, ci, co, k, st, p, affine=False):
        super().__init__(DilConv(ci, ci, k, st, p, 1, affine), DilConv(ci, co, k, 1, p, 1, affine))
class Zero(nn.Module):
    def __init__(s, st): super().__init__(); s.st = st
    def forward(s, x): return x.mul(0.) if s.st == 1 else x[:, :, ::s.st, ::s.st].mul(0.)
class FactorizedReduce(nn.Module):
    def __init__(s, ci, co, affine=False):
        super().__init__(); s.c1 = nn.Conv2d(ci, co // 2, 1, 2, bias=False); s.c2 = nn.Conv2d(ci, co // 2, 1, 2, bias=False); s.bn = nn.BatchNorm2d(co, affine=affine)
    def forward(s, x):
        x = F.relu(x); return s.bn(torch.cat([s.c1(x), s.c2(x[:, :, 1:, 1:])], dim=1))
def make(name, c, st):
    return {'none': lambda: Zero(st),
            'max_pool_3x3': lambda: nn.Sequential(nn.MaxPool2d(3, st, 1), nn.BatchNorm2d(c, affine=False)),
            'avg_pool_3x3': lambda: nn.Sequential(nn.AvgPool2d(3, st, 1, count_include_pad=False), nn.BatchNorm2d(c, affine=False)),
            'skip_connect': lambda: nn.Identity() if st == 1 else FactorizedReduce(c, c),
            'sep_conv_3x3': lambda: SepConv(c, c, 3, st, 1), 'sep_conv_5x5': lambda: SepConv(c, c, 5, st, 2),
            'dil_conv_3x3': lambda: DilConv(c, c, 3, st, 2, 2), 'dil_conv_5x5': lambda: DilConv(c, c, 5, st, 4, 2)}[name]()
class MixedOp(nn.Module):
    def __init__(s, c, st, skip_none):
        super().__init__(); s.idx = [i for i, p in enumerate(PRIMS) if not (skip_none and p == 'none')]
        s.ops = nn.ModuleList([make(PRIMS[i], c, st) for i in s.idx])
    def forward(s, x, w): return sum(w[i] * op(x) for i, op in zip(s.idx, s.ops))
class Cell(nn.Module):
    def __init__(s, steps, cpp, cp, c, red, red_prev, skip_none):
        super().__init__(); s.red = red; s.steps = steps
        s.pre0 = FactorizedReduce(cpp, c) if red_prev else ReLUConvBN(cpp, c, 1, 1, 0); s.pre1 = ReLUConvBN(cp, c, 1, 1, 0)
        s.ops = nn.ModuleList([MixedOp(c, 2 if red and j < 2 else 1, skip_none) for i in range(steps) for j in range(2 + i)])
    def forward(s, s0, s1, W):
        st = [s.pre0(s0), s.pre1(s1)]; off = 0
        for i in range(s.steps):
            st.append(sum(s.ops[off + j](h, W[off + j]) for j, h in enumerate(st))); off += len(st) - 1
        return torch.cat(st[-s.steps:], dim=1)
class Network(nn.Module):
    def __init__(s, C, classes, layers, steps=4, mult=4, stem_mult=3, skip_none=False):
        super().__init__()
        cc = stem_mult * C
        s.stem = nn.Sequential(nn.Conv2d(3, cc, 3, padding=1, bias=False), nn.BatchNorm2d(cc))
        cpp, cp, cc = cc, cc, C; s.cells = nn.ModuleList(); rp = False
        for i in range(layers):
            red = i in [layers // 3, 2 * layers // 3]
            if red: cc *= 2
            s.cells.append(Cell(steps, cpp, cp, cc, red, rp, skip_none)); rp = red; cpp, cp = cp, mult * cc
        s.gap = nn.AdaptiveAvgPool2d(1); s.classifier = nn.Linear(cp, classes)
        k = sum(2 + i for i in range(steps))
        s.alphas_normal = nn.Parameter(1e-3 * torch.randn(k, len(PRIMS))); s.alphas_reduce = nn.Parameter(1e-3 * torch.randn(k, len(PRIMS)))
    def weights(s): return [p for n, p in s.named_parameters() if not n.startswith('alphas')]
    def forward(s, x):
        s0 = s1 = s.stem(x)
        wn, wr = F.softmax(s.alphas_normal, dim=-1), F.softmax(s.alphas_reduce, dim=-1)
        for c in s.cells: s0, s1 = s1, c(s0, s1, wr if c.red else wn)
        return s.classifier(s.gap(s1).flatten(1))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--channels', type=int, default=8); ap.add_argument('--cells', type=int, default=5)
    ap.add_argument('--input-size', type=int, default=16); ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--skip-none', action='store_true'); ap.add_argument('--json')
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = Network(a.channels, 10, a.cells, skip_none=a.skip_none)
    wopt = torch.optim.SGD(net.weights(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    aopt = torch.optim.Adam([net.alphas_normal, net.alphas_reduce], lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    x = torch.randn(a.batch, 3, a.input_size, a.input_size); y = torch.randint(0, 10, (a.batch,))
    def wstep():
        wopt.zero_grad(); net.alphas_normal.requires_grad_(False); net.alphas_reduce.requires_grad_(False)
        F.cross_entropy(net(x), y).backward(); nn.utils.clip_grad_norm_(net.weights(), 5); wopt.step()
        net.alphas_normal.requires_grad_(True); net.alphas_reduce.requires_grad_(True)
    def astep():
        aopt.zero_grad()
        for p in net.weights(): p.requires_grad_(False)
        F.cross_entropy(net(x), y).backward(); aopt.step()
        for p in net.weights(): p.requires_grad_(True)
    def timed(f):
        t = []
        for i in range(a.warmup + a.steps):
            t0 = time.perf_counter(); f(); dt = time.perf_counter() - t0
            if i >= a.warmup: t.append(dt)
        return sorted(t)
    tw = timed(wstep); ts = timed(lambda: (astep(), wstep()))
    mw, ms = tw[len(tw) // 2], ts[len(ts) // 2]
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads: weight step {mw*1e3:.1f} ms ({a.batch/mw:.1f} img/s), search step {ms*1e3:.1f} ms ({2*a.batch/ms:.1f} img/s)")
    if a.json:
        json.dump({"framework": "pytorch", "version": torch.__version__, "threads": torch.get_num_threads(), "channels": a.channels, "cells": a.cells,
                   "input_size": a.input_size, "batch": a.batch, "skip_none": a.skip_none, "weight_step_ms": [v * 1e3 for v in tw],
                   "search_step_ms": [v * 1e3 for v in ts], "weight_images_per_second": a.batch / mw, "search_images_per_second": 2 * a.batch / ms},
                  open(a.json, 'w'), indent=1)

if __name__ == '__main__':
    main()
