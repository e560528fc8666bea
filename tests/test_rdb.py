"""storage/rdb.py: CRC64, LZF, the RDB v10 encoder/decoder, interop with redis-server."""

import os
import shutil
import struct
import subprocess
import tempfile
import time

import pytest
import redis

from storage import rdb
from storage.keyspace import Keyspace
from tests.helpers import free_port, wait_ping


def test_crc64_redis_test_vector():
    assert rdb.crc64(0, b"123456789") == 0xE9C6D914C4B8D9CA
    # streaming in pieces gives the same result
    assert rdb.crc64(rdb.crc64(0, b"1234"), b"56789") == 0xE9C6D914C4B8D9CA
    # the pure-Python fallback agrees with the compiled one, also chained
    data = bytes(range(256)) * 5 + b"tail"
    assert rdb.crc64_python(0, data) == rdb.crc64(0, data) == rdb.crc64_of(data)
    for n in range(0, 3 * rdb.SHORT_CRC):            # the short payloads' function too
        assert rdb.crc64_short(data[:n]) == rdb.crc64_python(0, data[:n]), n
    assert rdb.crc64_python(rdb.crc64_python(0, data[:77]), data[77:]) == rdb.crc64(0, data)


def test_length_and_int_encodings():
    r = rdb.Reader(rdb.encode_length(5) + rdb.encode_length(300) + rdb.encode_length(70000)
                   + rdb.encode_length(1 << 40))
    assert [r.plain_length() for _ in range(4)] == [5, 300, 70000, 1 << 40]
    for s in (b"0", b"-1", b"127", b"-128", b"32767", b"-32768", b"2147483647",
              b"-2147483648", b"2147483648", b"007", b"+1", b"", b"abc", b"12345678901"):
        enc = rdb.encode_string(s)
        assert rdb.Reader(enc).string() == s
    assert rdb.encode_string(b"12")[0] == 0xC0            # int8
    assert rdb.encode_string(b"1000")[0] == 0xC1          # int16
    assert rdb.encode_string(b"100000")[0] == 0xC2        # int32
    assert rdb.encode_string(b"007")[0] == 3              # not canonical: plain


def _keyspace():
    ks = Keyspace(16)
    db0 = ks.db(0)
    db0.set(b"a", b"1")
    db0.set(b"bin", bytes(range(256)) * 3)
    db0.set(b"empty", b"")
    db0.set(b"neg", b"-42")
    db0.set(b"ttl", b"v")
    db0.set_expire(b"ttl", 4102444800000)
    ks.db(7).set(b"x" * 100, b"y" * 20000)
    return ks


def test_round_trip():
    ks = _keyspace()
    data = rdb.dumps(ks.dbs, {"redis-ver": "7.0.15", "redis-bits": 64, "aof-base": 0})
    assert data.startswith(b"REDIS0010")
    assert data[-9] == 0xFF
    assert struct.unpack("<Q", data[-8:])[0] == rdb.crc64(0, data[:-8])
    got = {}
    aux = {}
    n = rdb.load(data, lambda db, k, v, e: got.__setitem__((db, k), (v, e)), aux.__setitem__)
    assert n == 6
    assert aux[b"redis-bits"] == b"64" and aux[b"redis-ver"] == b"7.0.15"
    want = {(db.id, k): (v, e) for db in ks.dbs if db is not None for k, v, e in db.items()}
    assert got == want


def test_checksum_mismatch_and_truncation_fail_clearly():
    data = bytearray(rdb.dumps(_keyspace().dbs))
    data[data.find(b"\x03ttl") + 2] ^= 0x01          # a flipped bit inside a key name
    with pytest.raises(rdb.RDBError, match="CRC64 checksum mismatch"):
        rdb.load(bytes(data), lambda *a: None)
    good = rdb.dumps(_keyspace().dbs)
    with pytest.raises(rdb.RDBError, match="end of the RDB"):
        rdb.load(good[:40], lambda *a: None)
    with pytest.raises(rdb.RDBError, match="signature"):
        rdb.load(b"NOTREDIS0010", lambda *a: None)
    # a stored checksum of 0 (rdbchecksum no) is not verified
    nocrc = good[:-8] + b"\0" * 8
    assert rdb.load(nocrc, lambda *a: None) == 6


def test_lzf_decompress_back_reference():
    # literal "abc" then a back reference of length 9 at distance 3 (overlapping)
    comp = bytes([2]) + b"abc" + bytes([(7 << 5) | 0, 0, 2])
    # length nibble 7 + extra byte 0 -> 7 + 2 = 9 bytes copied from distance 3
    assert rdb.lzf_decompress(comp, 12) == b"abc" * 4
    with pytest.raises(rdb.RDBError):
        rdb.lzf_decompress(comp, 13)


@pytest.fixture(scope="module")
def redis_dir():
    d = tempfile.mkdtemp(prefix="pynode-rdb-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _redis_server(d, *args):
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--dir", d, "--save", "", "--daemonize", "no", *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ping(port)
    return p, port


def _stop(p):
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)


def test_load_redis_produced_rdb_with_lzf(redis_dir):
    p, port = _redis_server(redis_dir, "--dbfilename", "lzf.rdb")
    try:
        c = redis.Redis(port=port)
        big = b"compress me please " * 200
        c.set("big", big)
        c.set("int", 123456)
        c.set("small", -5)
        c.set("ttl", "abcdefghijklmnopqrstuvwxyz" * 3, px=3600000)
        c.execute_command("SELECT", 3)
        c.set("other", "x" * 100)
        c.save()
        c.close()
    finally:
        _stop(p)
    data = open(os.path.join(redis_dir, "lzf.rdb"), "rb").read()
    assert len(data) < len(big)          # really compressed
    got = {}
    rdb.load(data, lambda db, k, v, e: got.__setitem__((db, k), (v, e)))
    assert got[(0, b"big")] == (big, -1)
    assert got[(0, b"int")] == (b"123456", -1)
    assert got[(0, b"small")] == (b"-5", -1)
    v, e = got[(0, b"ttl")]
    assert v == b"abcdefghijklmnopqrstuvwxyz" * 3 and e > time.time() * 1000
    assert got[(3, b"other")] == (b"x" * 100, -1)


def test_unknown_value_type_fails_clearly(redis_dir):
    """A value type pynode cannot load (a module's value, type 7) stops the
    load with its offset and the type's name."""
    p, port = _redis_server(redis_dir, "--dbfilename", "mod.rdb")
    try:
        c = redis.Redis(port=port)
        c.set("first", "v")
        c.save()
        c.close()
    finally:
        _stop(p)
    data = open(os.path.join(redis_dir, "mod.rdb"), "rb").read()
    body = data[:-9]                                  # up to EOF and the CRC64
    module_key = bytes((7,)) + rdb.encode_string(b"m") + rdb.encode_length(12345) + b"\0" * 8
    bad = body + module_key + b"\xff"
    bad += struct.pack("<Q", rdb.crc64(0, bad))
    got = []
    with pytest.raises(rdb.RDBError, match=r"value type 7 \(module\) at offset %d.*not "
                                           r"supported" % len(body)):
        rdb.load(bad, lambda *a: got.append(a))
    assert [k for _, k, _, _ in got] == [b"first"]


def test_redis_server_loads_pynode_rdb(redis_dir):
    ks = _keyspace()
    with open(os.path.join(redis_dir, "pynode.rdb"), "wb") as fh:
        rdb.dump(ks.dbs, fh.write, {"redis-ver": "7.0.15", "redis-bits": 64,
                                    "ctime": int(time.time()), "used-mem": 0, "aof-base": 0})
    p, port = _redis_server(redis_dir, "--dbfilename", "pynode.rdb")
    try:
        c = redis.Redis(port=port)
        assert c.get("a") == b"1"
        assert c.get("bin") == bytes(range(256)) * 3
        assert c.get("empty") == b""
        assert c.get("neg") == b"-42"
        assert c.pexpiretime("ttl") == 4102444800000
        c.execute_command("SELECT", 7)
        assert c.get("x" * 100) == b"y" * 20000
        assert c.dbsize() == 1
        c.close()
    finally:
        _stop(p)


@pytest.mark.parametrize("compression", [True, False])
@pytest.mark.parametrize("checksum", [True, False])
def test_rdbcompression_and_rdbchecksum_files_load_in_redis_server(redis_dir, compression,
                                                                   checksum, monkeypatch):
    """rdbcompression yes: strings over 20 bytes (keys, values, elements) are
    LZF-compressed as rdbSaveRawString does; no: written plain.  rdbchecksum
    no: 8 zero bytes instead of the CRC64, which neither loader verifies."""
    monkeypatch.setattr(rdb, "COMPRESSION", compression)
    monkeypatch.setattr(rdb, "CHECKSUM", checksum)
    ks = _keyspace()
    ks.db(0).set(b"long-key-" + b"k" * 40, b"abc" * 1000)
    data = rdb.dumps(ks.dbs, {"redis-ver": "7.0.15", "redis-bits": 64})
    lzf = rdb.lzf_compress(b"abc" * 1000, 2996)
    compressed = b"\xc3" + rdb.encode_length(len(lzf)) + rdb.encode_length(3000) + lzf
    assert (compressed in data) == compression
    assert (b"y" * 20000 in data) != compression
    crc = struct.unpack("<Q", data[-8:])[0]
    assert crc == (rdb.crc64(0, data[:-8]) if checksum else 0)
    assert rdb.load(data, lambda *a: None) == 7
    with open(os.path.join(redis_dir, "opts.rdb"), "wb") as fh:
        fh.write(data)
    p, port = _redis_server(redis_dir, "--dbfilename", "opts.rdb")
    try:
        c = redis.Redis(port=port)
        assert c.get("long-key-" + "k" * 40) == b"abc" * 1000
        assert c.get("bin") == bytes(range(256)) * 3
        c.execute_command("SELECT", 7)
        assert c.get("x" * 100) == b"y" * 20000
        c.close()
    finally:
        _stop(p)


def test_string_compression_matches_redis_server_bytes(redis_dir):
    """The same string value is encoded to the same bytes as redis-server's
    SAVE writes it (liblzf's stream), for compressible and incompressible
    values, and int-looking ones."""
    values = [b"abc" * 1000, b"a" * 21, b"x" * 20, os.urandom(100), b"12345678901",
              b"hello world, hello world, hello world!"]
    p, port = _redis_server(redis_dir, "--dbfilename", "bytes.rdb")
    try:
        c = redis.Redis(port=port)
        for i, v in enumerate(values):
            c.set("k%d" % i, v)
        c.save()
        c.close()
    finally:
        _stop(p)
    data = open(os.path.join(redis_dir, "bytes.rdb"), "rb").read()
    for i, v in enumerate(values):
        record = bytes((0,)) + rdb.encode_string(b"k%d" % i) + rdb.encode_string(v)
        assert record in data, v[:30]
