#!/usr/bin/env python3
"""Safetensors fixtures for FrugalNNTests, written by the reference Python `safetensors` library.

    python3 scripts/make_safetensors_fixture.py            # (re)write the fixtures
    python3 scripts/make_safetensors_fixture.py --check D  # check files Frugal wrote into folder D

Writes into Tests/FrugalNNTests/Fixtures/:
  python_mixed.safetensors     F32, F16, BF16, I64, I32, U8, BOOL, F64 tensors, a scalar, an empty
                               tensor and a two-key __metadata__, via safetensors.torch.save_file.
  python_roundtrip.safetensors the exact bytes the library writes for the tensors of
                               SafetensorsTests.roundTripMatchesPython (F32 + F16 + BF16, one metadata
                               key); Frugal's writer must produce the same bytes.
  python_rejects/*.safetensors small malformed files the library refuses (holes, overlaps, trailing
                               bytes, bad offsets, ...); the tests check that Frugal refuses them too.
Requires: pip install safetensors torch numpy.

--differential D compares, case by case, the Python library's verdict with Frugal's on the fuzz
cases that `SafetensorsTests.fuzzHeaders` writes into D when FRUGAL_SAFETENSORS_FUZZ_DUMP=D is set
(file names end in -ok or -err: Frugal's verdict).

--check D reads D/frugal_written.safetensors and the sharded checkpoint D/sharded/ that the test
`SafetensorsTests.writesFilesForPythonCheck` leaves when FRUGAL_SAFETENSORS_EXPORT=D is set, with the
Python library, and verifies every value.
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file, load_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "Tests", "FrugalNNTests", "Fixtures")


def mixed():
    # Values exactly representable in every dtype used, so the Swift test can hard-code them.
    return {
        "f32": torch.tensor([[1.0, -2.5, 3.25], [0.0, 1e-3, -7.0]], dtype=torch.float32),
        "f16": torch.tensor([0.5, -1.0, 65504.0, 6.103515625e-05], dtype=torch.float16),
        "bf16": torch.tensor([[1.5, -2.25], [0.09375, 3.0e38]], dtype=torch.bfloat16),
        "i64": torch.tensor([-3, 0, 7, 1 << 40], dtype=torch.int64),
        "i32": torch.tensor([[-1, 2], [3, -4]], dtype=torch.int32),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True], dtype=torch.bool),
        "f64": torch.tensor([0.25, -1.0], dtype=torch.float64),
        "scalar": torch.tensor(42.0, dtype=torch.float32),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
    }


def roundtrip():
    # Mirrors SafetensorsTests.roundTripMatchesPython.
    f32 = torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1
    f16 = torch.tensor([1.0, -0.5, 0.25, 2048.0], dtype=torch.float16)
    bf16 = torch.tensor([[1.0, 2.0], [-3.0, 0.5], [0.125, -8.0]], dtype=torch.bfloat16)
    return {"layer.weight": f32, "layer.bias": f16, "emb": bf16, "a": torch.tensor([7.0])}


def header_file(header, data):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def rejects():
    f = lambda s, o: {"dtype": "F32", "shape": s, "data_offsets": o}
    cases = {
        "hole": header_file({"a": f([1], [0, 4]), "b": f([1], [8, 12])}, b"\0" * 12),
        "overlap": header_file({"a": f([2], [0, 8]), "b": f([1], [4, 8])}, b"\0" * 8),
        "trailing_bytes": header_file({"a": f([1], [0, 4])}, b"\0" * 8),
        "short_data": header_file({"a": f([2], [0, 8])}, b"\0" * 4),
        "size_mismatch": header_file({"a": f([3], [0, 8])}, b"\0" * 8),
        "negative_dim": header_file({"a": f([-1], [0, 4])}, b"\0" * 4),
        "float_dim": header_file({"a": f([1.0], [0, 4])}, b"\0" * 4),
        "overflow_shape": header_file({"a": f([1 << 40, 1 << 40], [0, 4])}, b"\0" * 4),
        "reversed_offsets": header_file({"a": f([0], [4, 0])}, b"\0" * 4),
        "unknown_dtype": header_file({"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
        "metadata_not_string": header_file({"__metadata__": {"k": 1}}, b""),
        "not_object": struct.pack("<Q", 8) + b"[1,2]   ",
        "header_past_end": struct.pack("<Q", 64) + b"{}      ",
        "header_too_large": struct.pack("<Q", 200_000_000) + b"{}      ",
        "trailing_garbage": struct.pack("<Q", 8) + b"{}xx    ",
        "three_offsets": header_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 4]}}, b"\0" * 4),
        "missing_shape": header_file({"a": {"dtype": "F32", "data_offsets": [0, 4]}}, b"\0" * 4),
        "subbyte_f4_odd": header_file({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, b"\0" * 2),
    }
    return cases


def write_fixtures():
    os.makedirs(FIX, exist_ok=True)
    save_file(mixed(), os.path.join(FIX, "python_mixed.safetensors"), metadata={"format": "pt", "note": "mixed \"dtypes\"\n"})
    save_file(roundtrip(), os.path.join(FIX, "python_roundtrip.safetensors"), metadata={"format": "pt"})
    rdir = os.path.join(FIX, "python_rejects")
    os.makedirs(rdir, exist_ok=True)
    for name, blob in rejects().items():
        path = os.path.join(rdir, name + ".safetensors")
        with open(path, "wb") as fh:
            fh.write(blob)
        try:
            with safe_open(path, "pt") as fh:
                list(fh.keys())
            raise SystemExit(f"expected the Python library to reject {name}")
        except SystemExit:
            raise
        except Exception as e:  # noqa: BLE001 - any library error is a rejection
            print(f"rejects/{name}: {str(e)[:90]}")
    for name in ("python_mixed.safetensors", "python_roundtrip.safetensors"):
        os.chmod(os.path.join(FIX, name), 0o644)
    # Sanity: read back what we wrote.
    back = load_file(os.path.join(FIX, "python_mixed.safetensors"))
    for k, v in mixed().items():
        assert torch.equal(back[k], v), k
    print("wrote fixtures to", os.path.normpath(FIX))


def check(folder):
    """Verify files written by Frugal (see SafetensorsTests.writesFilesForPythonCheck)."""
    path = os.path.join(folder, "frugal_written.safetensors")
    with safe_open(path, "pt") as fh:
        meta = fh.metadata()
        assert meta == {"format": "pt", "writer": "frugal"}, meta
        t = {k: fh.get_tensor(k) for k in fh.keys()}
    expect = {
        "w32": torch.tensor([[0.5, -1.5, 2.0], [3.0, -4.0, 0.0]], dtype=torch.float32),
        "w16": torch.tensor([1.0, -0.5, 0.25, 2048.0], dtype=torch.float16),
        "wbf": torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.bfloat16),
        "scalar": torch.tensor(3.5, dtype=torch.float32),
        "empty": torch.zeros((0, 4), dtype=torch.float32),
    }
    assert set(t) == set(expect), sorted(t)
    for k, v in expect.items():
        assert t[k].dtype == v.dtype and t[k].shape == v.shape and torch.equal(t[k], v), (k, t[k], v)
    # The same tensors saved by the library must give the same bytes (single metadata key aside).
    sharded = os.path.join(folder, "sharded")
    with open(os.path.join(sharded, "model.safetensors.index.json")) as fh:
        index = json.load(fh)
    total = 0
    seen = {}
    for shard in sorted(set(index["weight_map"].values())):
        for k, v in load_file(os.path.join(sharded, shard)).items():
            assert index["weight_map"][k] == shard, k
            seen[k] = v
            total += v.numel() * v.element_size()
    assert total == index["metadata"]["total_size"], (total, index["metadata"])
    for i in range(10):
        want = torch.full((8, 8), float(i), dtype=torch.float32)
        assert torch.equal(seen[f"layers.{i}.weight"], want), i
    print(f"OK: Python read {path} ({len(t)} tensors) and {len(seen)} tensors from {len(set(index['weight_map'].values()))} shards")


def has_duplicate_names(path):
    with open(path, "rb") as fh:
        blob = fh.read()
    n = int.from_bytes(blob[:8], "little")
    keys = [k for k, _ in json.loads(blob[8:8 + n], object_pairs_hook=lambda pairs: pairs)]
    return len(keys) != len(set(keys))


def differential(folder):
    """Python's accept/reject verdict must match Frugal's on every dumped fuzz case."""
    agree, duplicates, disagree = 0, 0, []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        frugal_ok = name.endswith("-ok.safetensors")
        try:
            with safe_open(os.path.join(folder, name), "np") as fh:
                list(fh.keys())
            python_ok = True
        except Exception:  # noqa: BLE001
            python_ok = False
        if python_ok == frugal_ok:
            agree += 1
        elif python_ok and has_duplicate_names(os.path.join(folder, name)):
            duplicates += 1  # deliberate: Frugal rejects duplicate names, the library keeps the last one
        else:
            disagree.append((name, python_ok))
    for name, python_ok in disagree[:20]:
        print(f"DISAGREE {name}: python {'accepts' if python_ok else 'rejects'}")
    print(f"{agree} cases agree, {duplicates} differ only by Frugal rejecting duplicate names, {len(disagree)} disagree")
    if disagree:
        raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--differential":
        differential(sys.argv[2])
    else:
        write_fixtures()
