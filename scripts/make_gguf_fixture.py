#!/usr/bin/env python3
"""GGUF fixtures for FrugalNNTests, made with the reference `gguf` package (pip install gguf).

    python3 scripts/make_gguf_fixture.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]

Writes into Tests/FrugalNNTests/Fixtures/:
  tiny.gguf                 a synthetic GGUF v3 file (GGUFWriter) with every metadata value type
                            (incl. nested arrays) and tensors F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
                            Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, I8, I32 in 1-3 dimensions.
  tiny_gguf_expected.json   what gguf.GGUFReader sees in tiny.gguf: version, alignment, data offset,
                            every metadata key with its type and value, every tensor's dims, type,
                            offset and byte size.
  tiny_gguf_ref.safetensors the reference dequantisation (gguf.quants.dequantize) of each tensor
                            of tiny.gguf as F32 in PyTorch order, under the tensor's name.
  smollm2_slices.safetensors slices of the real SmolLM2 file: for blk.0.attn_k.weight (Q4_1),
                            token_embd.weight (Q8_0) and blk.0.attn_norm.weight (F32), the raw bytes
                            of the first rows (`<name>.raw`, U8) and their reference dequantisation
                            (`<name>.ref`, F32); metadata records rows, types, dims and the real
                            file's tensor counts.
Quantised test data: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 come from gguf.quants.quantize of random floats; the
K-quants (which gguf-py cannot quantise) are random bytes with finite scales, which exercise every
bit of the dequantiser.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "Tests", "FrugalNNTests", "Fixtures")
DEFAULT_REAL = os.path.expanduser(os.path.join(os.environ.get("FRUGAL_DATA", "~/.cache/frugal-data"),
                                               "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf"))


def finite_half(rng, n, lo=-3, hi=0):
    """n float16 values of random sign and magnitude 10^lo..10^hi, as uint8 bytes."""
    mag = 10.0 ** rng.uniform(lo, hi, size=n)
    return (mag * rng.choice([-1.0, 1.0], size=n)).astype(np.float16).view(np.uint8)


def random_kquant(rng, qtype, n_blocks):
    """Random blocks of a K-quant with finite f16 (or f32) scale fields."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    # Offsets of the half-precision scale fields in each block (see ggml-common.h).
    halves = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}[qtype]
    for off in halves:
        raw[:, off:off + 2] = finite_half(rng, n_blocks).reshape(n_blocks, 2)
    return raw


def write_tiny(path):
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(path, arch="tinytest")
    # One key per metadata value type, plus arrays (incl. nested and empty-string elements).
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4_000_000_000)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "héllo ✓ gguf")
    w.add_uint64("test.u64", 18_000_000_000_000_000_000)
    w.add_int64("test.i64", -9_000_000_000_000_000_000)
    w.add_float64("test.f64", -2.718281828459045)
    w.add_array("test.arr_i32", [1, -2, 3])
    w.add_key_value("test.arr_u16", [1, 2, 65535], V.ARRAY, sub_type=V.UINT16)
    w.add_array("test.arr_f32", [0.5, -1.25])
    w.add_array("test.arr_bool", [True, False, True])
    w.add_array("test.arr_str", ["a", "", "ü b"])
    w.add_array("test.nested", [[1, 2], [3], [4, 5, 6]])
    w.add_array("test.nested_str", [["x", "y"], ["z"]])
    # Tokenizer-style keys so the typed tokenizer accessor can be tested.
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<unk>", "a", "b", "ab", "Ġc"])
    w.add_token_types([2, 1, 1, 1, 1])
    w.add_token_merges(["a b", "Ġ c"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)

    def floats(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    w.add_tensor("f32.3d", floats(2, 3, 4))
    w.add_tensor("f32.1d", floats(5))
    w.add_tensor("f16", floats(3, 8).astype(np.float16))
    w.add_tensor("i8", rng.integers(-128, 128, size=(2, 3), dtype=np.int8))
    w.add_tensor("i32", rng.integers(-1000, 1000, size=(4,), dtype=np.int32))
    for qtype, shape in [(Q.BF16, (2, 16)), (Q.Q8_0, (3, 64)), (Q.Q4_0, (2, 64)), (Q.Q4_1, (2, 64)),
                         (Q.Q5_0, (2, 32)), (Q.Q5_1, (2, 32))]:
        x = floats(*shape)
        x[0, 0] = 0.0  # an exact zero and a constant block exercise the d == 0 paths
        if shape[1] >= 64:
            x[1, 32:64] = 0.75
        q = gguf.quants.quantize(x, qtype)
        w.add_tensor(qtype.name.lower(), q, raw_dtype=qtype)
    for qtype, blocks in [(Q.Q2_K, 2), (Q.Q3_K, 2), (Q.Q4_K, 2), (Q.Q5_K, 2), (Q.Q6_K, 2)]:
        raw = random_kquant(rng, qtype, blocks)  # shape (2, type_size): 2 rows of 256
        w.add_tensor(qtype.name.lower(), raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def value_to_json(field):
    types = [V(t).name for t in field.types]
    return {"types": types, "value": field.contents()}


def describe(path):
    r = gguf.GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        meta[k] = value_to_json(f)
    version = int(r.fields["GGUF.version"].contents())
    tensors = []
    refs = {}
    for t in r.tensors:
        dims = [int(d) for d in t.shape]  # gguf-py lists ne[0] first
        tensors.append({"name": t.name, "dims": dims, "type": t.tensor_type.name,
                        "offset": int(t.data_offset - r.data_offset), "bytes": int(t.n_bytes)})
        if t.tensor_type in (Q.I8, Q.I16, Q.I32, Q.I64, Q.F64):
            ref = np.asarray(t.data).astype(np.float32)  # plain types gguf-py does not "dequantise"
        else:
            ref = gguf.quants.dequantize(t.data, t.tensor_type)
        refs[t.name] = np.ascontiguousarray(ref.astype(np.float32).reshape(list(reversed(dims))))
    return {"version": version, "alignment": int(r.alignment), "data_offset": int(r.data_offset),
            "file_size": os.path.getsize(path), "metadata": meta, "tensors": tensors}, refs


def write_slices(real, out):
    r = gguf.GGUFReader(real)
    counts = {}
    for t in r.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    by_name = {t.name: t for t in r.tensors}
    tensors = {}
    meta = {"source": os.path.basename(real), "tensor_count": str(len(r.tensors)),
            "type_counts": json.dumps(counts, sort_keys=True)}
    for name, rows in [("blk.0.attn_k.weight", 3), ("token_embd.weight", 2), ("blk.0.attn_norm.weight", 1)]:
        t = by_name[name]
        block, size = gguf.GGML_QUANT_SIZES[t.tensor_type]
        row_bytes = int(t.shape[0]) // block * size
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)[: rows * row_bytes].copy()
        ref = gguf.quants.dequantize(raw.reshape(rows, row_bytes), t.tensor_type).astype(np.float32)
        tensors[name + ".raw"] = raw
        tensors[name + ".ref"] = np.ascontiguousarray(ref.reshape(rows, -1))
        meta[name] = json.dumps({"type": t.tensor_type.name, "dims": [int(d) for d in t.shape], "rows": rows})
    save_file(tensors, out, metadata=meta)
    print(f"slices of {real}: {counts}")


def main():
    os.makedirs(FIX, exist_ok=True)
    tiny = os.path.join(FIX, "tiny.gguf")
    write_tiny(tiny)
    desc, refs = describe(tiny)
    with open(os.path.join(FIX, "tiny_gguf_expected.json"), "w") as fh:
        json.dump(desc, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    save_file(refs, os.path.join(FIX, "tiny_gguf_ref.safetensors"))
    print(f"tiny.gguf: {os.path.getsize(tiny)} bytes, {len(desc['tensors'])} tensors, {len(desc['metadata'])} keys")
    real = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_REAL
    if os.path.exists(real):
        write_slices(real, os.path.join(FIX, "smollm2_slices.safetensors"))
    else:
        print(f"{real} not found: smollm2_slices.safetensors left as it is")
    for name in os.listdir(FIX):
        if not os.path.isdir(os.path.join(FIX, name)):
            os.chmod(os.path.join(FIX, name), 0o644)


if __name__ == "__main__":
    main()
