#!/usr/bin/env python3
"""Fixtures for Tests/FrugalFlowerTests, made with the real flwr package (pinned version).

    python3 -m venv /work/venvs/flower && /work/venvs/flower/bin/pip install flwr==1.42.0
    /work/venvs/flower/bin/python scripts/make_flower_fixtures.py

Writes Tests/FrugalFlowerTests/Fixtures/:
  npy.json      np.save bytes of arrays of several dtypes and shapes, with their values
  objects.json  a train message as the SuperLink delivers it: every object of its tree (Array
                chunks of 64 bytes, so arrays span several chunks and zero chunks repeat), the
                tree, the metadata and the decoded content to expect
  reply.json    replies (content and error) built with fixed metadata: their objects and ids
                (64-byte chunks too)
  auth.json     P-384 and P-256 keys (PEM and OpenSSH), the PEM public key Flower sends, and a
                signature over a timestamp made by flwr's `sign_message`
"""

import base64
import json
import os
import sys

os.environ["FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE"] = "64"  # read when flwr is imported

import numpy as np  # noqa: E402
import flwr  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.app.error import Error  # noqa: E402
from flwr.app.metadata import Metadata  # noqa: E402
from flwr.app.message import make_message  # noqa: E402
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree  # noqa: E402
from flwr.supercore.primitives.asymmetric import public_key_to_bytes, sign_message, verify_signature  # noqa: E402

VERSION = "1.42.0"
OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "FrugalFlowerTests", "Fixtures")


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def tree(t) -> dict:
    return {"id": t.object_id, "children": [tree(c) for c in t.children]}


def objects_of(msg: Message) -> dict:
    return {"root": msg.object_id, "tree": tree(get_object_tree(msg)),
            "objects": {k: b64(o.deflate()) for k, o in get_all_nested_objects(msg).items()}}


def npy_fixture() -> list:
    cases = [
        ("f32_2x3", np.arange(6, dtype=np.float32).reshape(2, 3) / 4 - 0.5),
        ("f32_vec", np.array([1.5, -2.25, 3e-8, 1e10, 0.0], dtype=np.float32)),
        ("f64_vec", np.array([0.1, -1.0, 2.5], dtype=np.float64)),
        ("i64_scalar", np.array(-7, dtype=np.int64)),
        ("u8_empty", np.zeros((0, 4), dtype=np.uint8)),
        ("bool_2x2", np.array([[True, False], [False, True]])),
        ("f32_4d", np.linspace(-1, 1, 2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)),
        ("f32_wide", np.ones((1, 1234567), dtype=np.float32)[:, :3]),  # first axis 1, 3 columns
    ]
    out = []
    for name, a in cases:
        a = np.ascontiguousarray(a)
        arr = Array(a)
        out.append({"name": name, "dtype": arr.dtype, "shape": list(arr.shape), "npy": b64(arr.data),
                    "values": [float(v) for v in a.reshape(-1).astype(np.float64)]})
    return out


def train_message() -> Message:
    arrays = ArrayRecord({
        "conv.weight": Array(np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 0.5),
        "conv.bias": Array(np.zeros(64, dtype=np.float32)),  # 6 chunks, the last 4 equal
        'naïve "name"': Array(np.array([3.25], dtype=np.float32)),
        "copy": Array(np.zeros(64, dtype=np.float32)),  # same array as conv.bias: one object
    })
    config = ConfigRecord({
        "lr": 0.05, "local-steps": 5, "server-round": 3, "name": "fixture ✓", "flag": True,
        "blob": b"\x00\x01\xff", "big": 2**63 + 5, "ints": [1, -2, 3], "floats": [0.5, 1.5],
        "names": ["a", "b"], "flags": [True, False], "blobs": [b"x", b"yz"], "bigs": [2**63, 1],
    })
    metrics = MetricRecord({"loss": 0.25, "n": 7, "hist": [1.0, 2.0], "ks": [1, -2]})
    content = RecordDict({"arrays": arrays, "config": config, "metrics": metrics})
    md = Metadata(run_id=123456789, message_id="", src_node_id=1, dst_node_id=987654321,
                  reply_to_message_id="", group_id="3", created_at=1765000000.25, ttl=43200.0,
                  message_type="train", src_task_id=11, dst_task_id=None)
    msg = make_message(metadata=md, content=content)
    msg.metadata.__dict__["_message_id"] = msg.object_id
    return msg


def replies() -> dict:
    md = Metadata(run_id=123456789, message_id="", src_node_id=987654321, dst_node_id=1,
                  reply_to_message_id="ab" * 32, group_id="3", created_at=1765000100.5, ttl=43099.75,
                  message_type="train", src_task_id=None, dst_task_id=11)
    content = RecordDict({
        "arrays": ArrayRecord({"w": Array(np.array([[1, 2], [3, 4]], dtype=np.float32) / 3)}),
        "metrics": MetricRecord({"train_loss": 0.5, "num-examples": 100}),
    })
    ok = make_message(metadata=md, content=content)
    md2 = Metadata(run_id=123456789, message_id="", src_node_id=987654321, dst_node_id=1,
                   reply_to_message_id="cd" * 32, group_id="3", created_at=1765000100.5, ttl=43099.75,
                   message_type="query", src_task_id=None, dst_task_id=11)
    err = make_message(metadata=md2, error=Error(code=2, reason="Frugal device: unsupported 'query'"))
    return {"content_reply": objects_of(ok), "error_reply": objects_of(err),
            "metadata": {"run_id": 123456789, "src_node_id": 987654321, "dst_node_id": 1, "group_id": "3",
                         "created_at": 1765000100.5, "ttl": 43099.75, "dst_task_id": 11}}


def auth() -> dict:
    out = {}
    for curve_name, curve in [("p384", ec.SECP384R1()), ("p256", ec.SECP256R1())]:
        key = ec.generate_private_key(curve)
        pub = public_key_to_bytes(key.public_key())
        timestamp = "2026-12-07T18:03:15.123456+00:00"
        sig = sign_message(key, timestamp.encode("ascii"))
        assert verify_signature(key.public_key(), timestamp.encode("ascii"), sig)
        out[curve_name] = {
            "private_pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode(),
            "private_sec1_pem": key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                                  serialization.NoEncryption()).decode(),
            "private_openssh": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                 serialization.NoEncryption()).decode(),
            "public_pem": pub.decode(), "timestamp": timestamp, "signature": b64(sig),
        }
    return out


def main() -> None:
    if flwr.__version__ != VERSION:
        sys.exit(f"flwr {flwr.__version__} is installed; these fixtures are for flwr=={VERSION}")
    os.makedirs(OUT, exist_ok=True)
    msg = train_message()
    obj = objects_of(msg)
    md = msg.metadata
    obj["metadata"] = {"run_id": md.run_id, "message_id": md.message_id, "src_node_id": md.src_node_id,
                       "dst_node_id": md.dst_node_id, "group_id": md.group_id, "created_at": md.created_at,
                       "ttl": md.ttl, "message_type": md.message_type, "src_task_id": md.src_task_id}
    obj["chunk_size"] = 64
    obj["flwr"] = VERSION
    files = {"npy.json": {"flwr": VERSION, "numpy": np.__version__, "arrays": npy_fixture()},
             "objects.json": obj, "reply.json": replies(), "auth.json": auth()}
    for name, data in files.items():
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=True)
            f.write("\n")
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")


if __name__ == "__main__":
    main()
