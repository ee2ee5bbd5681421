#!/usr/bin/env python3
"""Independent implementation of the snapfs repository format, version 2.

Written from format-spec/README.md only (never from src/), so that the vectors it
writes to independent.txt check the Rust code against the spec rather than against
itself. Needs: pip install blake3 pynacl zstandard argon2-cffi

The nonces and the salt below are FIXED so the output is reproducible; real writers
MUST draw them at random for every seal (spec section 7).
"""
import pathlib
import struct

import blake3
import zstandard
from argon2.low_level import Type, hash_secret_raw
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt as aead_open
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt as aead_seal

OUT = pathlib.Path(__file__).with_name("independent.txt")
out = []  # (name, bytes)


def emit(name, value):
    out.append((name, value))
    return value


# Conventions: every integer little-endian; str16 = u16 length + bytes; bytes32 = u32 length + bytes.
def u8(v): return struct.pack("<B", v)
def u16(v): return struct.pack("<H", v)
def u32(v): return struct.pack("<I", v)
def u64(v): return struct.pack("<Q", v)
def i64(v): return struct.pack("<q", v)
def str16(b): return u16(len(b)) + b
def bytes32(b): return u32(len(b)) + b


# §2 Keys: blake3::derive_key(context, master), keyed BLAKE3 ids.
MASTER = emit("master", b"snapfs test vector master key 01")
REPO_ID = b"\xab" * 16
assert len(MASTER) == 32
CONTEXTS = {
    "data_id_key": "snapfs 2026-11 v1 data blob id",
    "tree_id_key": "snapfs 2026-11 v1 tree blob id",
    "snapshot_id_key": "snapfs 2026-11 v1 snapshot id",
    "chunker_key": "snapfs 2026-11 v1 chunker gear",
    "config_key": "snapfs 2026-12 v2 config",
    "keyring_key": "snapfs 2026-12 v2 keyring",
}
K = {n: emit(n, blake3.blake3(MASTER, derive_key_context=c).digest()) for n, c in CONTEXTS.items()}
def data_id(b): return blake3.blake3(b, key=K["data_id_key"]).digest()
def tree_id(b): return blake3.blake3(b, key=K["tree_id_key"]).digest()
def snapshot_id(b): return blake3.blake3(b, key=K["snapshot_id_key"]).digest()


emit("data_id(hello)", data_id(b"hello"))
emit("tree_id(hello)", tree_id(b"hello"))
emit("snapshot_id(hello)", snapshot_id(b"hello"))

# §5 Gear table: 2048 bytes of XOF output, keyed with the chunker key, over empty input, 256 LE u64.
xof = blake3.blake3(b"", key=K["chunker_key"]).digest(length=2048)
gear = struct.unpack("<256Q", xof)
emit("gear_table_first8", b"".join(u64(g) for g in gear[:8]))

# §7 Envelope v2: epoch u32 | nonce [24] | AEAD(compression u8 || payload) with 16-byte tag.
DATA, TREE, SNAPSHOT, PACKHEADER, CONFIG, EPOCH = 1, 2, 3, 4, 5, 6
ZERO_ID = bytes(32)
EPOCH_KEYS = {0: emit("epoch0_key", b"\x11" * 32), 7: emit("epoch7_key", b"\x77" * 32)}


def aad(typ, epoch, id_, extra=b""):
    # "snapfs" | version 2 | type | epoch u32 | id [32] | extra  -> 44 + len(extra) bytes
    a = b"snapfs" + u8(2) + u8(typ) + u32(epoch) + id_ + extra
    assert len(a) == 44 + len(extra)
    return a


def writer_compression(payload):
    # §7: zstd only when payload > 64 bytes and the frame is smaller than len - len/64.
    if len(payload) > 64:
        frame = zstandard.ZstdCompressor(level=3).compress(payload)
        if len(frame) < len(payload) - len(payload) // 64:
            return 1, frame
    return 0, payload


def seal(key, typ, epoch, id_, payload, nonce, extra=b"", compression=None):
    if compression is None:
        compression, stored = writer_compression(payload)
    else:
        stored = zstandard.ZstdCompressor(level=3).compress(payload) if compression else payload
    ct = aead_seal(u8(compression) + stored, aad(typ, epoch, id_, extra), nonce, key)
    env = u32(epoch) + nonce + ct
    assert len(env) == 45 + len(stored)  # overhead 45 bytes
    return env


def open_envelope(key_for_epoch, typ, env, id_=ZERO_ID, extra=b"", max_raw=64 << 20):
    """Reader side of §7: returns the payload; re-hashes Data/Tree/Snapshot ids."""
    assert len(env) >= 45
    epoch = struct.unpack_from("<I", env, 0)[0]
    pt = aead_open(env[28:], aad(typ, epoch, id_, extra), env[4:28], key_for_epoch(epoch))
    compression, body = pt[0], pt[1:]
    if compression == 1:
        body = zstandard.ZstdDecompressor().decompress(body, max_output_size=max_raw)
    assert compression in (0, 1) and len(body) <= max_raw
    rehash = {DATA: data_id, TREE: tree_id, SNAPSHOT: snapshot_id}.get(typ)
    assert rehash is None or rehash(body) == id_, "id mismatch"
    return epoch, compression, body


def data_key(epoch): return EPOCH_KEYS[epoch]


# §2 Epoch object epochs/00000000: Epoch envelope, keyring key, id zeros, extra = repository id.
CREATED = 1795442709123456789
epoch_payload = emit("epoch_payload", EPOCH_KEYS[0] + i64(CREATED))
epoch_obj = emit("epoch_object", seal(K["keyring_key"], EPOCH, 0, ZERO_ID, epoch_payload,
                                      b"\x22" * 24, extra=REPO_ID, compression=0))

# §3 config: header (magic, version 2, repository id) then the Config envelope (epoch 0).
header = b"SNAPFS\x00\x01" + u32(2) + REPO_ID
params = emit("config_params", u32(524288) + u32(1048576) + u32(8388608) + u32(16777216) + u8(3))
config_file = emit("config_file", header + seal(K["config_key"], CONFIG, 0, ZERO_ID, params,
                                                b"\x33" * 24, extra=header))
emit("aad_config", aad(CONFIG, 0, ZERO_ID, header))

# §2/§3 a repository sharing another's content identity: 145-byte plaintext, the parameters
# then the data id, tree id, snapshot id and chunker keys it uses instead of derived ones.
IDENTITY = [bytes([0x51 + i]) * 32 for i in range(4)]
params_identity = emit("config_params_identity", params + b"".join(IDENTITY))
config_file_identity = emit("config_file_identity", header + seal(K["config_key"], CONFIG, 0, ZERO_ID,
                                                                  params_identity, b"\x35" * 24, extra=header,
                                                                  compression=0))
emit("identity_data_id_hello", blake3.blake3(b"hello", key=IDENTITY[0]).digest())
emit("identity_tree_id_hello", blake3.blake3(b"hello", key=IDENTITY[1]).digest())

# §7 Data envelopes in epoch 0.
hello = b"hello"
env_raw = emit("envelope_data_raw", seal(data_key(0), DATA, 0, data_id(hello), hello,
                                         b"\x44" * 24, compression=0))
emit("aad_data_hello", aad(DATA, 0, data_id(hello)))
zz = b"z" * 4096
env_zstd = emit("envelope_data_zstd", seal(data_key(0), DATA, 0, data_id(zz), zz,
                                           b"\x55" * 24, compression=1))
emit("envelope_data_zstd_id", data_id(zz))


# §8 Tree. Two nodes, sorted by name:
#   "a": file (kind 1), mode 0o644, uid 1000, gid 100, user "alice", group "users",
#        mtime 1795442709.123456789, ctime 1795442710.000000001, no atime,
#        dev 0x803, ino 4242, nlink 1, size 5, rdev 0, no symlink target,
#        xattr user.note = b"hi", contents [data_id("hello")]
#   "d": dir (kind 2), mode 0o755, same uid/gid/names/times/dev/ino/nlink/rdev, size 0,
#        no xattrs, contents [32 x 0x22] (its subtree id)
def node(name, kind, mode, size, xattrs, contents):
    b = str16(name) + u8(kind) + u32(mode) + u32(1000) + u32(100) + str16(b"alice") + str16(b"users")
    b += i64(1795442709) + u32(123456789) + i64(1795442710) + u32(1)  # mtime, ctime
    b += u8(0)  # flags: no atime
    b += u64(0x803) + u64(4242) + u32(1) + u64(size) + u64(0) + bytes32(b"")  # dev ino nlink size rdev target
    b += u16(len(xattrs)) + b"".join(str16(k) + bytes32(v) for k, v in xattrs)
    return b + u32(len(contents)) + b"".join(contents)


tree = emit("tree", u8(1) + u32(2) + node(b"a", 1, 0o644, 5, [(b"user.note", b"hi")], [data_id(hello)])
            + node(b"d", 2, 0o755, 0, [], [b"\x22" * 32]))
emit("tree_id(tree)", tree_id(tree))
env_tree = emit("envelope_tree", seal(EPOCH_KEYS[7], TREE, 7, tree_id(tree), tree, b"\x66" * 24))

# §8 Snapshot. Fields: version 2, time 1795442709123456789, root = tree_id(tree), no parent,
#   host "host", user "alice", uid 1000, gid 100, paths ["/a", "/d"], tags ["daily", "vector"],
#   description b"independent vector", program version "snapfs 0.2.0", summary 1, 2, ..., 13,
#   original = 32 x 0x99 (it rewrote that snapshot). snapshot_v1 is the same snapshot as
#   version 1 wrote it (no original field), which readers must still accept.
fields = i64(CREATED) + tree_id(tree) + u8(0) + ZERO_ID
fields += str16(b"host") + str16(b"alice") + u32(1000) + u32(100)
fields += u16(2) + str16(b"/a") + str16(b"/d") + u16(2) + str16(b"daily") + str16(b"vector")
fields += bytes32(b"independent vector") + str16(b"snapfs 0.2.0") + b"".join(u64(v) for v in range(1, 14))
emit("snapshot_v1", u8(1) + fields)
snap = u8(2) + fields + u8(1) + b"\x99" * 32
emit("snapshot", snap)
emit("snapshot_id", snapshot_id(snap))
env_snap = emit("envelope_snapshot", seal(data_key(0), SNAPSHOT, 0, snapshot_id(snap), snap, b"\x88" * 24))

# §6 Pack: blob envelopes | header envelope | header length u32 | "SFPK".
blobs = [(DATA, data_id(hello), env_raw, len(hello)), (DATA, data_id(zz), env_zstd, len(zz))]
body, entries = b"", u32(len(blobs))
for typ, id_, env, raw_len in blobs:
    entries += u8(typ) + id_ + u32(len(body)) + u32(len(env)) + u32(raw_len)  # 45 bytes
    body += env
emit("pack_header", entries)
header_env = emit("pack_header_envelope", seal(data_key(0), PACKHEADER, 0, ZERO_ID, entries, b"\x99" * 24))
emit("pack_trailer", u32(len(header_env)) + b"SFPK")
pack = emit("pack_file", body + header_env + u32(len(header_env)) + b"SFPK")
emit("pack_id", blake3.blake3(pack).digest())

# §4 Key slot wrapping the master key.
PASSWORD = b"correct horse battery staple"
m, t, p, salt = 65536, 3, 4, b"\xcd" * 32
slot_head = b"SNAPKEY\x01" + u32(m) + u32(t) + u32(p) + salt + i64(1795442709000000000)
slot_head += str16(b"host") + str16(b"alice")
kek = hash_secret_raw(PASSWORD, salt, t, m, p, 32, Type.ID, 19)
emit("key_slot_kek", kek)
slot = emit("key_slot", slot_head + b"\xef" * 24 + aead_seal(MASTER, slot_head, b"\xef" * 24, kek))

# ---- Self-check: read everything back as a reader would (spec §§3, 4, 6, 7, 2). ----
assert len(aad(DATA, 0, data_id(hello))) == 44
assert open_envelope(lambda e: K["keyring_key"], EPOCH, epoch_obj, extra=REPO_ID)[2] == epoch_payload
assert struct.unpack_from("<I", epoch_obj)[0] == 0 and len(epoch_obj) == 85
cfg_head = config_file[:28]
assert cfg_head[:8] == b"SNAPFS\x00\x01" and struct.unpack_from("<I", cfg_head, 8)[0] == 2
ep, c, got = open_envelope(lambda e: K["config_key"], CONFIG, config_file[28:], extra=cfg_head)
assert (ep, got) == (0, params)
assert open_envelope(data_key, DATA, env_raw, data_id(hello))[1:] == (0, hello)
assert open_envelope(data_key, DATA, env_zstd, data_id(zz), max_raw=4096)[1:] == (1, zz)
tree_compression = open_envelope(data_key, TREE, env_tree, tree_id(tree))[1]
snap_compression = open_envelope(data_key, SNAPSHOT, env_snap, snapshot_id(snap))[1]
# Pack: trailer, header bound (256 MiB), header entries, then each blob.
L = struct.unpack_from("<I", pack, len(pack) - 8)[0]
assert pack[-4:] == b"SFPK" and 45 <= L <= 256 << 20 and L + 8 <= len(pack)
H = len(pack) - 8 - L
_, hdr_compression, hdr = open_envelope(data_key, PACKHEADER, pack[H:H + L])
count = struct.unpack_from("<I", hdr)[0]
assert len(hdr) == 4 + 45 * count == 94
for i in range(count):
    typ, id_, off, ln, raw = struct.unpack_from("<B32sIII", hdr, 4 + 45 * i)
    assert off + ln <= H
    assert len(open_envelope(data_key, typ, pack[off:off + ln], id_, max_raw=raw)[2]) == raw
# Key slot: parse, check the reader bounds, derive the KEK, unwrap.
sm, st, sp = struct.unpack_from("<III", slot, 8)
assert 8 * sp <= sm <= 4 << 20 and 1 <= st <= 64 and 1 <= sp <= 64
hl = struct.unpack_from("<H", slot, 60)[0]
ul = struct.unpack_from("<H", slot, 62 + hl)[0]
nonce_at = 64 + hl + ul
assert len(slot) == nonce_at + 24 + 48 == 136 + hl + ul
kek2 = hash_secret_raw(PASSWORD, slot[20:52], st, sm, sp, 32, Type.ID, 19)
assert aead_open(slot[nonce_at + 24:], slot[:nonce_at], slot[nonce_at:nonce_at + 24], kek2) == MASTER


def fails(fn):
    try:
        fn()
    except Exception:
        return True
    return False


# Negative checks: the AAD binds type, epoch, id and the extra bytes.
assert fails(lambda: open_envelope(data_key, TREE, env_raw, data_id(hello)))
assert fails(lambda: open_envelope(lambda e: EPOCH_KEYS[0], DATA, u32(7) + env_raw[4:], data_id(hello)))
assert fails(lambda: open_envelope(data_key, DATA, env_raw, data_id(zz)))
assert fails(lambda: open_envelope(lambda e: K["config_key"], CONFIG, config_file[28:],
                                   extra=b"SNAPFS\x00\x01" + u32(1) + REPO_ID))
assert fails(lambda: open_envelope(lambda e: K["keyring_key"], EPOCH, epoch_obj, extra=b"\xac" * 16))

with OUT.open("w") as f:
    f.write("# snapfs format v2 test vectors, produced by format-spec/vectors/independent.py:\n"
            "# an implementation written from format-spec/README.md alone, NOT by the code under test.\n"
            "# Nonces and the key-slot salt are fixed for reproducibility (writers MUST use random ones).\n"
            f"# zstd frames come from python-zstandard {zstandard.__version__} (libzstd "
            f"{zstandard.ZSTD_VERSION[0]}.{zstandard.ZSTD_VERSION[1]}.{zstandard.ZSTD_VERSION[2]}), level 3;"
            " readers must open them, a reseal with another libzstd may differ.\n"
            f"# Compression chosen by the writer rule: envelope_tree {tree_compression}, envelope_snapshot"
            f" {snap_compression}, pack_header_envelope {hdr_compression}; epoch_object and config 0.\n"
            f"# Sizes: epoch_object {len(epoch_obj)}, config_file {len(config_file)},"
            f" config_file_identity {len(config_file_identity)}, pack_file {len(pack)}"
            f" (header envelope at {H}, length {L}), key_slot {len(slot)} bytes.\n")
    for name, value in out:
        f.write(f"{name} = {value.hex()}\n")
print(f"wrote {len(out)} vectors to {OUT}")
