"""The string hashes of ``hash.py`` for a few long strings, one string at a time in Python
integers.

``hash.py`` runs its block loops over block positions, vectorised across the strings: each
block is some twenty numpy calls on arrays of one value per string. For a few long strings
those calls are all overhead (a 1 MB string took 2.3 s for Fingerprint64 and StringToHashBucket,
8.5 s for SipHash); Python's own integer arithmetic on one string is ~50x faster (~45 ms, 50
ms and 0.3 s). The words of a string are read once, all at a time (``struct``), and every
result is masked to 64 bits: the same bits as the vectorised kernels (``tests/test_hash_long
.py`` compares them on every length up to 300 and on long strings, and TF's on some). Each
loop checks the loop deadline (``runtime/limits.py``) every 1024 blocks, so a hostile
length costs bounded time.
"""

from __future__ import annotations

import struct

from tfdeploy.runtime.limits import check_rows, loop_deadline

_M = (1 << 64) - 1
_K0, _K1, _K2 = 0xC3A5C85C97CB3127, 0xB492B66FBE98F273, 0x9AE16A3B2F90404F
_KMUL = 0x9DDFEA08EB382D69


def _rot(v: int, s: int) -> int:
    return ((v >> s) | (v << (64 - s))) & _M


def _words(b: bytes, at: int, n: int) -> tuple:
    return struct.unpack_from(f"<{n}Q", b, at)


def _len16(u: int, v: int, mul: int) -> int:
    a = ((u ^ v) * mul) & _M
    a ^= a >> 47
    b = ((v ^ a) * mul) & _M
    b ^= b >> 47
    return (b * mul) & _M


def _weak32(w: int, x: int, y: int, z: int, a: int, b: int) -> tuple[int, int]:
    a = (a + w) & _M
    b = _rot((b + a + z) & _M, 21)
    c = a
    a = (a + x + y) & _M
    b = (b + _rot(a, 44)) & _M
    return (a + z) & _M, (b + c) & _M


def fingerprint_long(b: bytes) -> int:
    """farmhashna::Hash64 of a string longer than 64 bytes (``hash._fingerprint_long``)."""
    n = len(b)
    x, y = 81, (81 * _K1 + 113) & _M
    z = (y * _K2 + 113) & _M
    z = ((z ^ (z >> 47)) * _K2) & _M
    v0 = v1 = w0 = w1 = 0
    x = (x * _K2 + _words(b, 0, 1)[0]) & _M
    deadline = loop_deadline()
    for k in range((n - 1) // 64):
        w = _words(b, 64 * k, 8)
        x = (_rot((x + y + v0 + w[1]) & _M, 37) * _K1) & _M
        y = (_rot((y + v1 + w[6]) & _M, 42) * _K1) & _M
        x ^= w1
        y = (y + v0 + w[5]) & _M
        z = (_rot((z + w0) & _M, 33) * _K1) & _M
        v0, v1 = _weak32(w[0], w[1], w[2], w[3], (v1 * _K1) & _M, (x + w0) & _M)
        w0, w1 = _weak32(w[4], w[5], w[6], w[7], (z + w1) & _M, (y + w[2]) & _M)
        x, z = z, x
        check_rows(k, deadline)
    mul = _K1 + ((z & 0xFF) << 1)
    w = _words(b, n - 64, 8)
    w0 = (w0 + ((n - 1) & 63)) & _M
    v0 = (v0 + w0) & _M
    w0 = (w0 + v0) & _M
    x = (_rot((x + y + v0 + w[1]) & _M, 37) * mul) & _M
    y = (_rot((y + v1 + w[6]) & _M, 42) * mul) & _M
    x ^= (w1 * 9) & _M
    y = (y + v0 * 9 + w[5]) & _M
    z = (_rot((z + w0) & _M, 33) * mul) & _M
    v0, v1 = _weak32(w[0], w[1], w[2], w[3], (v1 * mul) & _M, (x + w0) & _M)
    w0, w1 = _weak32(w[4], w[5], w[6], w[7], (z + w1) & _M, (y + w[2]) & _M)
    x, z = z, x
    return _len16((_len16(v0, w0, mul) + (y ^ (y >> 47)) * _K0 + z) & _M,
                  (_len16(v1, w1, mul) + x) & _M, mul)


def _sip_rounds(v0: int, v1: int, v2: int, v3: int, count: int) -> tuple:
    for _ in range(count):
        v0 = (v0 + v1) & _M
        v1 = ((v1 << 13) | (v1 >> 51)) & _M ^ v0
        v0 = ((v0 << 32) | (v0 >> 32)) & _M
        v2 = (v2 + v3) & _M
        v3 = ((v3 << 16) | (v3 >> 48)) & _M ^ v2
        v0 = (v0 + v3) & _M
        v3 = ((v3 << 21) | (v3 >> 43)) & _M ^ v0
        v2 = (v2 + v1) & _M
        v1 = ((v1 << 17) | (v1 >> 47)) & _M ^ v2
        v2 = ((v2 << 32) | (v2 >> 32)) & _M
    return v0, v1, v2, v3


def siphash24(b: bytes, k0: int, k1: int) -> int:
    """SipHash-2-4 of one string (``hash._siphash24``)."""
    k0, k1 = k0 & _M, k1 & _M
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573
    n = len(b)
    deadline = loop_deadline()
    for k, m in enumerate(_words(b, 0, n // 8)):
        v3 ^= m
        v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 2)
        v0 ^= m
        check_rows(k, deadline)
    m = int.from_bytes(b[n // 8 * 8:], "little") | ((n & 0xFF) << 56)
    v3 ^= m
    v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 2)
    v0 ^= m
    v2 ^= 0xFF
    v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 4)
    return v0 ^ v1 ^ v2 ^ v3


def hash64(b: bytes, seed: int) -> int:
    """TF's legacy Hash64, MurmurHash64A, of one string (``hash._hash64``)."""
    m = 0xC6A4A7935BD1E995
    n = len(b)
    h = (seed ^ (n * m)) & _M
    deadline = loop_deadline()
    for k, w in enumerate(_words(b, 0, n // 8)):
        w = (w * m) & _M
        w ^= w >> 47
        h = ((h ^ ((w * m) & _M)) * m) & _M
        check_rows(k, deadline)
    if n % 8:
        h = ((h ^ int.from_bytes(b[n // 8 * 8:], "little")) * m) & _M
    h ^= h >> 47
    h = (h * m) & _M
    return h ^ (h >> 47)
