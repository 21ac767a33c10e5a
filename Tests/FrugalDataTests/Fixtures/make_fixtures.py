#!/usr/bin/env python3
"""Generates the FrugalData test fixtures in this folder (deterministic; run from anywhere).

Compression: one payload compressed by Python's gzip/zlib at several levels and strategies, a gzip
member with every optional header field, a two-member gzip file, raw deflate, and tar archives in
GNU, pax and ustar formats. Data sets: a miniature MNIST (IDX, gzip) and a miniature CIFAR-10
binary archive (tar.gz) for the loader and downloader tests. `manifest.json` lists the checksums
the tests compare against.
"""
import gzip, hashlib, io, json, os, random, struct, tarfile, zlib

here = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(1234)

def out(name, data):
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)

# --- payload: text, incompressible bytes, long runs, short periods, every byte value
text = (b"It was the best of times, it was the worst of times, it was the age of wisdom, "
        b"it was the age of foolishness, it was the epoch of belief.\n")
parts = [text * 60,
         bytes(rng.getrandbits(8) for _ in range(4096)),
         b"\x00" * 5000,
         b"abc" * 1500,
         bytes(range(256)) * 8,
         bytes(rng.choice(b"ACGT") for _ in range(12000)),
         text.upper() * 40]
payload = b"".join(parts)
out("payload.bin", payload)

manifest = {"payload": {"size": len(payload), "crc32": zlib.crc32(payload),
                        "md5": hashlib.md5(payload).hexdigest(),
                        "sha256": hashlib.sha256(payload).hexdigest()}}

for level in (1, 6, 9):
    out(f"payload.l{level}.gz", gzip.compress(payload, compresslevel=level, mtime=0))
for level in (0, 1, 9):
    out(f"payload.l{level}.zlib", zlib.compress(payload, level))
for name, strategy in (("fixed", zlib.Z_FIXED), ("huffman", zlib.Z_HUFFMAN_ONLY), ("rle", zlib.Z_RLE)):
    c = zlib.compressobj(6, zlib.DEFLATED, 15, 8, strategy)
    out(f"payload.{name}.zlib", c.compress(payload) + c.flush())
c = zlib.compressobj(6, zlib.DEFLATED, -15)
out("payload.raw.deflate", c.compress(payload) + c.flush())

# gzip member with FEXTRA, FNAME, FCOMMENT and FHCRC (Python's gzip writes only FNAME)
c = zlib.compressobj(9, zlib.DEFLATED, -15)
body = c.compress(payload) + c.flush()
hdr = bytearray(b"\x1f\x8b\x08" + bytes([4 | 8 | 16 | 2]) + struct.pack("<I", 1_700_000_000) + b"\x02\x03")
extra = b"FR\x04\x00frug"
hdr += struct.pack("<H", len(extra)) + extra
hdr += "caf\u00e9.bin".encode("latin-1") + b"\x00"
hdr += b"a comment\x00"
hdr += struct.pack("<H", zlib.crc32(bytes(hdr)) & 0xFFFF)
out("payload.fields.gz", bytes(hdr) + body + struct.pack("<II", zlib.crc32(payload), len(payload)))

# two members
a, b = payload[:20000], payload[20000:]
out("payload.multi.gz", gzip.compress(a, 6, mtime=0) + gzip.compress(b, 1, mtime=0))

# tar archives with long names
long_name = "a-rather-long-folder-name-that-goes-on/" + "x" * 90 + "/file-with-a-long-name.txt"
files = {"readme.txt": b"hello tar\n",
         long_name: b"long name contents\n" * 10,
         "empty.bin": b"",
         "sub/data.bin": bytes(range(256)) * 3}
for fmt_name, fmt in (("gnu", tarfile.GNU_FORMAT), ("pax", tarfile.PAX_FORMAT)):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        d = tarfile.TarInfo("sub"); d.type = tarfile.DIRTYPE; d.mode = 0o755; d.mtime = 0
        t.addfile(d)
        for n, data in files.items():
            info = tarfile.TarInfo(n); info.size = len(data); info.mode = 0o644; info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    out(f"files.{fmt_name}.tar.gz", gzip.compress(buf.getvalue(), 9, mtime=0))
# ustar: a path split into prefix (<=155) and name (<=100)
buf = io.BytesIO()
ustar_name = "p" * 120 + "/name-in-ustar.txt"
with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
    info = tarfile.TarInfo(ustar_name); info.size = 6; info.mtime = 0
    t.addfile(info, io.BytesIO(b"ustar\n"))
out("files.ustar.tar", buf.getvalue())
manifest["tar"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
manifest["ustar_name"] = ustar_name

# --- miniature MNIST: IDX, gzip (train 30, test 10)
def idx_images(imgs, h, w):
    return struct.pack(">HBBIII", 0, 8, 3, len(imgs), h, w) + b"".join(imgs)
def idx_labels(labels):
    return struct.pack(">HBBI", 0, 8, 1, len(labels)) + bytes(labels)
mn = {}
for split, n in (("train", 30), ("t10k", 10)):
    labels = [i % 10 for i in range(n)]
    imgs = []
    for i, lab in enumerate(labels):
        img = bytearray(28 * 28)
        for y in range(28):
            for x in range(28):
                img[y * 28 + x] = (lab * 20 + x * 3 + y + i) % 256
        imgs.append(bytes(img))
    ib, lb = idx_images(imgs, 28, 28), idx_labels(labels)
    os.makedirs(os.path.join(here, "mnist-mini"), exist_ok=True)
    out(f"mnist-mini/{split}-images-idx3-ubyte.gz", gzip.compress(ib, 9, mtime=0))
    out(f"mnist-mini/{split}-labels-idx1-ubyte.gz", gzip.compress(lb, 9, mtime=0))
    mn[split] = {"count": n, "pixel_sum": sum(sum(i) for i in imgs)}
manifest["mnist_mini"] = mn
for f in sorted(os.listdir(os.path.join(here, "mnist-mini"))):
    manifest.setdefault("mnist_mini_md5", {})[f] = hashlib.md5(open(os.path.join(here, "mnist-mini", f), "rb").read()).hexdigest()

# --- miniature CIFAR-10 binary archive: 3 records a batch
buf = io.BytesIO()
cif = {}
with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for bi, n in enumerate(names):
        rec = bytearray()
        for r in range(3):
            label = (bi * 3 + r) % 10
            rec.append(label)
            rec += bytes(((label * 7 + p // 97 + r) % 256) for p in range(3072))
        info = tarfile.TarInfo("cifar-10-batches-bin/" + n); info.size = len(rec); info.mtime = 0
        t.addfile(info, io.BytesIO(bytes(rec)))
        cif[n] = hashlib.sha256(bytes(rec)).hexdigest()
    meta = "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]).encode() + b"\n\n"
    info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt"); info.size = len(meta); info.mtime = 0
    t.addfile(info, io.BytesIO(meta))
data = gzip.compress(buf.getvalue(), 9, mtime=0)
out("cifar-10-binary-mini.tar.gz", data)
manifest["cifar_mini"] = {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(), "batches": cif}

with open(os.path.join(here, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
