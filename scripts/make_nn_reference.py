#!/usr/bin/env python3
"""Prints reference values (PyTorch) for Tests/FrugalNNTests/NNReferenceTests.swift: losses with
class weights / label smoothing / ignore index, and a few optimiser steps. Inputs are small
literal arrays so the test embeds them directly."""
import torch
torch.set_printoptions(precision=8)
logits = torch.tensor([[1.0, -0.5, 2.0, 0.3], [0.2, 0.1, -1.0, 1.5], [-0.7, 2.2, 0.4, 0.0]], requires_grad=True)
t = torch.tensor([2, 3, 1])
w = torch.tensor([0.5, 1.0, 2.0, 1.5])
def show(name, v): print(name, [round(float(x), 8) for x in v.flatten()])
l = torch.nn.functional.cross_entropy(logits, t); show("ce", l.reshape(1))
l = torch.nn.functional.cross_entropy(logits, t, weight=w, label_smoothing=0.1); show("ce_w_ls", l.reshape(1))
l.backward(); show("ce_w_ls_grad", logits.grad)
l = torch.nn.functional.cross_entropy(logits, torch.tensor([2, -100, 1]), ignore_index=-100); show("ce_ignore", l.reshape(1))
p = torch.tensor([0.2, 0.9, 0.5]); y = torch.tensor([0.0, 1.0, 1.0])
show("bce", torch.nn.functional.binary_cross_entropy(p, y).reshape(1))
x = torch.tensor([-2.0, 0.5, 3.0]); show("bcelogits", torch.nn.functional.binary_cross_entropy_with_logits(x, y).reshape(1))
def run(opt_fn, name):
    p = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    opt = opt_fn([p])
    for i in range(3):
        opt.zero_grad(); loss = (p ** 2 * torch.tensor([1.0, 2.0, 3.0])).sum() + p.sum() * i; loss.backward(); opt.step()
    show(name, p.detach())
run(lambda ps: torch.optim.SGD(ps, lr=0.1), "sgd")
run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01), "sgd_mom")
run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), "sgd_nesterov")
run(lambda ps: torch.optim.Adam(ps, lr=0.1, weight_decay=0.1), "adam")
run(lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=0.1), "adamw")
