#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets from the protocol test vectors
(crates/netsvc-proto/tests/vectors/frames.txt). Run from the repository root after the
vectors change: python3 fuzz/make_seeds.py"""
import json, os, re

VECTORS = "crates/netsvc-proto/tests/vectors/frames.txt"
OUT = "fuzz/corpus"

def vectors():
    name, frame, hexes = None, None, []
    for line in open(VECTORS, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("## "):
            if name:
                yield name, frame, bytes.fromhex("".join(hexes))
            name, frame, hexes = line[3:], None, []
        elif line.startswith("frame: "):
            frame = json.loads(line[7:])
        elif line.startswith("hex: "):
            hexes.append(line[5:].replace(" ", ""))
    if name:
        yield name, frame, bytes.fromhex("".join(hexes))

def write(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data)

# Seeds not generated here are kept: one a fuzz run found, one from the vectors of an
# earlier protocol revision (its REPORT had no `paced` element).
FOUND = {("handshake", "stranger-split-reason"), ("value_decode", "report-payload")}
for target in ("frame_decode", "value_decode", "handshake", "pattern"):
    folder = os.path.join(OUT, target)
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if (target, name) not in FOUND:
            os.remove(os.path.join(folder, name))

payloads, subjects, patterns = {}, set(), set()
for name, frame, raw in vectors():
    # frame_decode: the first byte is the decoder's limit / 16 (0xff: 4080 bytes).
    write("frame_decode", name, b"\xff" + raw)
    # handshake: the first byte picks the chunk size (low nibble) and the limit (high bit).
    if frame["kind"] in ("HELLO", "CLOSE", "HEARTBEAT"):
        write("handshake", name, b"\x03" + raw)
    for field in ("args", "result", "payload"):
        if isinstance(frame.get(field), dict):
            payloads[frame[field]["msgpack"]] = f"{name}-{field}"
    if frame.get("subject"):
        subjects.add(frame["subject"])
    if frame.get("pattern"):
        patterns.add(frame["pattern"])

# A HELLO followed by the peer's first frame, as the link sees it.
hello = dict((n, r) for n, _, r in vectors())
write("handshake", "hello-then-synced", b"\x05" + hello["hello-client"] + hello["synced"])

# HELLOs that log in (docs/SECURITY.md): the client HELLO with its empty options map
# replaced by credentials, its length prefix adjusted.
def with_options(raw, options):
    body = raw[4:]
    assert body[-1] == 0x80, "the client HELLO vector ends with an empty options map"
    text = lambda t: bytes([0xA0 | len(t)]) + t.encode()
    encoded = bytes([0x80 | len(options)]) + b"".join(text(k) + text(v) for k, v in options)
    body = body[:-1] + encoded
    return len(body).to_bytes(4, "big") + body

write("handshake", "hello-with-password", b"\x03" + with_options(
    hello["hello-client"], [("attempt", "1"), ("user", "alice"), ("password", "hunter2")]))
write("handshake", "hello-with-token", b"\x03" + with_options(
    hello["hello-client"], [("token", "tok-123")]))
# A TLS ClientHello's record header on a plaintext port.
write("handshake", "tls-client-hello", b"\x05" + bytes.fromhex("160301011c010001180303") + bytes(20))

for hexed, name in payloads.items():
    write("value_decode", name, bytes.fromhex(hexed))

# pattern: first byte 1 -> two pattern lines, then subject lines.
pats = sorted(patterns) + ["*.?CME"]
lines = pats[:2] + sorted(subjects) + ["quote.", "system.time", "q\u00e9.\u00e9"]
write("pattern", "vectors", bytes([len(pats[:2]) - 1]) + "\n".join(lines).encode())
write("pattern", "stars", b"\x02" + "a*b*c\n*\n??\nabc\naXbYc\nab\n".encode())

# value_decode: a few forms the vectors lack (float 32, the timestamp extension, each
# netsvc extension, nesting, an unknown extension).
extra = {
    "float32": "ca3f800000",
    "timestamp-64": "d7ff0000000065a4f0c0",
    "date": "c70601000007ea010f",
    "time": "c707020a1e0000000000",
    "duration": "c70c0400000000000000050000000a",
    "opaque": "c7070500036d793a7078",
    "unknown-ext": "d42a07",
    "nested": "9291920191c0810161c3",
}
for name, hexed in extra.items():
    write("value_decode", name, bytes.fromhex(hexed))
