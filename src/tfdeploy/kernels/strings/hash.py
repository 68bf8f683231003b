"""String hashing: StringToHashBucketFast (FarmHash Fingerprint64), StringToHashBucketStrong
(SipHash-2-4), StringToHashBucket (TF's legacy Hash64, MurmurHash64A) and Fingerprint.

All three hashes are bit-exact with TF's. They run vectorised over the strings: each string is
laid out in a zero-padded byte matrix, 64-bit words are gathered at per-string offsets, and the
block loops run over block positions (a Python loop per block index, not per string), with
strings that have no more blocks masked out. Strings of very different lengths are hashed in
batches of similar length, which bounds the matrix's size. A batch of a few long strings is
hashed a string at a time in Python integers instead (``hash_long.py``, ~30-50x faster there).
"""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import op
from tfdeploy.kernels.strings import hash_long
from tfdeploy.runtime.limits import check_array

_U64 = np.uint64
_K0 = _U64(0xC3A5C85C97CB3127)
_K1 = _U64(0xB492B66FBE98F273)
_K2 = _U64(0x9AE16A3B2F90404F)
_KMUL = _U64(0x9DDFEA08EB382D69)


def _bytes_list(x) -> list[bytes]:
    out = []
    for v in np.asarray(x, dtype=object).reshape(-1).tolist():
        if isinstance(v, bytes):
            out.append(v)
        elif isinstance(v, str):
            out.append(v.encode())
        else:
            raise TypeError(f"expected a string tensor (bytes), got an element of type "
                            f"{type(v).__name__}")
    return out


class _Bytes:
    """Strings as a zero-padded byte matrix (64 spare bytes a row), with their lengths; words
    are read through unaligned little-endian views of it, one gather per fetch."""

    def __init__(self, strings: list[bytes]):
        n = len(strings)
        self.lens = np.fromiter(map(len, strings), np.int64, n)
        self.width = width = (int(self.lens.max()) if n else 0) + 64
        joined = np.frombuffer(b"".join(strings), np.uint8)
        mat = np.zeros((n, width), np.uint8)
        if joined.size:
            rows = np.repeat(np.arange(n), self.lens)
            starts = np.cumsum(self.lens) - self.lens
            cols = np.arange(joined.size) - np.repeat(starts, self.lens)
            mat[rows, cols] = joined
        self.n = n
        self._flat = flat = mat.reshape(-1)
        size = max(flat.size - 7, 0)
        self._w8 = np.ndarray((size,), "<u8", flat, 0, (1,)) if size else np.zeros(0, _U64)
        self._w4 = np.ndarray((size,), "<u4", flat, 0, (1,)) if size else np.zeros(0, _U64)
        self._base = np.arange(n, dtype=np.int64) * width

    def fetch(self, offsets, nbytes: int = 8, rows=None) -> np.ndarray:
        """Little-endian words of ``nbytes`` (8 or 4) bytes at each row's offset, as uint64;
        ``rows`` selects rows (offsets then align with them)."""
        base = self._base if rows is None else self._base[rows]
        offs = np.clip(np.asarray(offsets, np.int64), 0, self.width - 8)
        words = self._w8 if nbytes == 8 else self._w4
        return words[base + offs].astype(_U64)

    def byte(self, offsets, rows=None) -> np.ndarray:
        base = self._base if rows is None else self._base[rows]
        offs = np.clip(np.asarray(offsets, np.int64), 0, self.width - 1)
        return self._flat[base + offs].astype(_U64)


def _rot(v, s: int):
    return (v >> _U64(s)) | (v << _U64(64 - s)) if s else v


def _shift_mix(v):
    return v ^ (v >> _U64(47))


def _len16(u, v, mul):
    a = (u ^ v) * mul
    a ^= a >> _U64(47)
    b = (v ^ a) * mul
    b ^= b >> _U64(47)
    return b * mul


def _weak32(w, x, y, z, a, b):
    a = a + w
    b = _rot(b + a + z, 21)
    c = a
    a = a + x + y
    b = b + _rot(a, 44)
    return a + z, b + c


def _weak32_at(s: _Bytes, off, a, b):
    return _weak32(s.fetch(off), s.fetch(off + 8), s.fetch(off + 16), s.fetch(off + 24), a, b)


_BATCH_BYTES = 1 << 22  # bytes of padded string matrix per batch
#: a batch of fewer strings than this, the longest of more than ``_SCALAR_BYTES``, is hashed
#: a string at a time in Python integers (``hash_long.py``): a block's twenty numpy calls cost
#: ~40 us whatever the strings' count, a string's block in Python ~1-2 us
_SCALAR_STRINGS = 16
_SCALAR_BYTES = 256


def _scalar(strings: list[bytes]) -> bool:
    return len(strings) < _SCALAR_STRINGS and max(map(len, strings)) > _SCALAR_BYTES


def _batched(strings: list[bytes], fn) -> np.ndarray:
    """``fn`` (a hash of a list of strings) over batches of strings of similar length, so the
    padded byte matrix stays small however long the longest string is."""
    n = len(strings)
    lens = np.fromiter(map(len, strings), np.int64, n)
    if n == 0 or (int(lens.max()) + 64) * n <= _BATCH_BYTES:
        return fn(strings)
    order = np.argsort(lens, kind="stable")
    sizes = lens[order] + 64
    out = np.empty(n, _U64)
    start = 0
    while start < n:
        # lengths ascend, so a batch's last string is its widest
        fits = sizes[start:] * np.arange(1, n - start + 1) <= _BATCH_BYTES
        end = start + max(1, int(np.count_nonzero(fits)))
        idx = order[start:end]
        out[idx] = fn([strings[i] for i in idx.tolist()])
        start = end
    return out


def fingerprint64(strings: list[bytes]) -> np.ndarray:
    """FarmHash Fingerprint64 (farmhashna::Hash64) of each string, as uint64."""
    return _batched(strings, _fingerprint64)


def _fingerprint64(strings: list[bytes]) -> np.ndarray:
    s = _Bytes(strings)
    out = np.full(s.n, _K2, _U64)  # the hash of the empty string
    with np.errstate(over="ignore"):
        # 1 to 3 bytes
        r = np.nonzero((s.lens > 0) & (s.lens < 4))[0]
        n = s.lens[r]
        y = s.byte(0, r) + (s.byte(n >> 1, r) << _U64(8))
        z = n.astype(_U64) + (s.byte(n - 1, r) << _U64(2))
        out[r] = _shift_mix(y * _K2 ^ z * _K0) * _K2
        # 4 to 7 bytes
        r = np.nonzero((s.lens >= 4) & (s.lens < 8))[0]
        n = s.lens[r]
        ln = n.astype(_U64)
        out[r] = _len16(ln + (s.fetch(0, 4, r) << _U64(3)), s.fetch(n - 4, 4, r),
                        _K2 + ln * _U64(2))
        # 8 to 16 bytes
        r = np.nonzero((s.lens >= 8) & (s.lens <= 16))[0]
        n = s.lens[r]
        mul = _K2 + n.astype(_U64) * _U64(2)
        a = s.fetch(0, 8, r) + _K2
        b = s.fetch(n - 8, 8, r)
        out[r] = _len16(_rot(b, 37) * mul + a, (_rot(a, 25) + b) * mul, mul)
        # 17 to 32 bytes
        r = np.nonzero((s.lens > 16) & (s.lens <= 32))[0]
        n = s.lens[r]
        mul = _K2 + n.astype(_U64) * _U64(2)
        a = s.fetch(0, 8, r) * _K1
        b = s.fetch(8, 8, r)
        c = s.fetch(n - 8, 8, r) * mul
        d = s.fetch(n - 16, 8, r) * _K2
        out[r] = _len16(_rot(a + b, 43) + _rot(c, 30) + d, a + _rot(b + _K2, 18) + c, mul)
        # 33 to 64 bytes
        r = np.nonzero((s.lens > 32) & (s.lens <= 64))[0]
        n = s.lens[r]
        mul = _K2 + n.astype(_U64) * _U64(2)
        a = s.fetch(0, 8, r) * _K2
        b = s.fetch(8, 8, r)
        c = s.fetch(n - 8, 8, r) * mul
        d = s.fetch(n - 16, 8, r) * _K2
        y = _rot(a + b, 43) + _rot(c, 30) + d
        z = _len16(y, a + _rot(b + _K2, 18) + c, mul)
        e = s.fetch(16, 8, r) * mul
        f = s.fetch(24, 8, r)
        g = (y + s.fetch(n - 32, 8, r)) * mul
        h = (z + s.fetch(n - 24, 8, r)) * mul
        out[r] = _len16(_rot(e + f, 43) + _rot(g, 30) + h, e + _rot(f + a, 18) + g, mul)
        long = np.nonzero(s.lens > 64)[0]
        if long.size:
            ls = [strings[i] for i in long.tolist()]
            out[long] = (np.array([hash_long.fingerprint_long(b) for b in ls], _U64)
                         if _scalar(ls) else _fingerprint_long(ls))
    return out


def _fingerprint_long(strings: list[bytes]) -> np.ndarray:
    """farmhashna::Hash64 of strings longer than 64 bytes: 64-byte blocks, then the last 64."""
    s = _Bytes(strings)
    n = s.lens
    seed = _U64(81)
    x = np.full(s.n, seed, _U64)
    y = np.full(s.n, seed * _K1 + _U64(113), _U64)
    z = _shift_mix(y * _K2 + _U64(113)) * _K2
    v0 = v1 = w0 = w1 = np.zeros(s.n, _U64)
    x = x * _K2 + s.fetch(0)
    blocks = (n - 1) // 64
    for k in range(int(blocks.max())):
        o = np.int64(64 * k)
        live = k < blocks
        nx = _rot(x + y + v0 + s.fetch(o + 8), 37) * _K1
        ny = _rot(y + v1 + s.fetch(o + 48), 42) * _K1
        nx = nx ^ w1
        ny = ny + v0 + s.fetch(o + 40)
        nz = _rot(z + w0, 33) * _K1
        nv0, nv1 = _weak32_at(s, o, v1 * _K1, nx + w0)
        nw0, nw1 = _weak32_at(s, o + 32, nz + w1, ny + s.fetch(o + 16))
        nx, nz = nz, nx
        x, y, z = (np.where(live, p, q) for p, q in ((nx, x), (ny, y), (nz, z)))
        v0, v1, w0, w1 = (np.where(live, p, q) for p, q in
                          ((nv0, v0), (nv1, v1), (nw0, w0), (nw1, w1)))
    mul = _K1 + ((z & _U64(0xFF)) << _U64(1))
    last = n - 64
    w0 = w0 + ((n - 1) & 63).astype(_U64)
    v0 = v0 + w0
    w0 = w0 + v0
    x = _rot(x + y + v0 + s.fetch(last + 8), 37) * mul
    y = _rot(y + v1 + s.fetch(last + 48), 42) * mul
    x = x ^ (w1 * _U64(9))
    y = y + v0 * _U64(9) + s.fetch(last + 40)
    z = _rot(z + w0, 33) * mul
    v0, v1 = _weak32_at(s, last, v1 * mul, x + w0)
    w0, w1 = _weak32_at(s, last + 32, z + w1, y + s.fetch(last + 16))
    x, z = z, x
    return _len16(_len16(v0, w0, mul) + _shift_mix(y) * _K0 + z,
                  _len16(v1, w1, mul) + x, mul)


def siphash24(strings: list[bytes], k0: int, k1: int) -> np.ndarray:
    """SipHash-2-4 of each string with the 128-bit key (k0, k1), as uint64."""
    return _batched(strings, lambda batch: _siphash24(batch, k0, k1))


def _siphash24(strings: list[bytes], k0: int, k1: int) -> np.ndarray:
    if strings and _scalar(strings):
        return np.array([hash_long.siphash24(b, k0, k1) for b in strings], _U64)
    s = _Bytes(strings)
    n = s.lens
    key0, key1 = _U64(k0 & 0xFFFFFFFFFFFFFFFF), _U64(k1 & 0xFFFFFFFFFFFFFFFF)
    v0 = np.full(s.n, key0 ^ _U64(0x736F6D6570736575), _U64)
    v1 = np.full(s.n, key1 ^ _U64(0x646F72616E646F6D), _U64)
    v2 = np.full(s.n, key0 ^ _U64(0x6C7967656E657261), _U64)
    v3 = np.full(s.n, key1 ^ _U64(0x7465646279746573), _U64)

    def rounds(v0, v1, v2, v3, count):
        for _ in range(count):
            v0 = v0 + v1
            v1 = _rot64l(v1, 13) ^ v0
            v0 = _rot64l(v0, 32)
            v2 = v2 + v3
            v3 = _rot64l(v3, 16) ^ v2
            v0 = v0 + v3
            v3 = _rot64l(v3, 21) ^ v0
            v2 = v2 + v1
            v1 = _rot64l(v1, 17) ^ v2
            v2 = _rot64l(v2, 32)
        return v0, v1, v2, v3

    with np.errstate(over="ignore"):
        blocks = n // 8
        for k in range(int(blocks.max()) if s.n else 0):
            live = k < blocks
            m = np.where(live, s.fetch(np.int64(8 * k)), _U64(0))
            v3 = v3 ^ m
            nv = rounds(v0, v1, v2, v3, 2)
            v0, v1, v2, v3 = (np.where(live, a, b) for a, b in zip(nv, (v0, v1, v2, v3)))
            v0 = v0 ^ m
        # the final block: the remaining bytes (zero padded) and the length in the top byte
        tail = s.fetch(blocks * 8)
        rem = (n - blocks * 8).astype(_U64)
        mask = np.where(rem > 0, (_U64(1) << (rem * _U64(8))) - _U64(1), _U64(0))
        m = (tail & mask) | ((n.astype(_U64) & _U64(0xFF)) << _U64(56))
        v3 = v3 ^ m
        v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 2)
        v0 = v0 ^ m
        v2 = v2 ^ _U64(0xFF)
        v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 4)
        return v0 ^ v1 ^ v2 ^ v3


def _rot64l(v, s: int):
    return (v << _U64(s)) | (v >> _U64(64 - s))


def hash64(strings: list[bytes], seed: int = 0xDECAFCAFFE) -> np.ndarray:
    """TF's legacy Hash64 (MurmurHash64A, tensorflow/core/lib/hash/hash.cc), as uint64."""
    return _batched(strings, lambda batch: _hash64(batch, seed))


def _hash64(strings: list[bytes], seed: int) -> np.ndarray:
    if strings and _scalar(strings):
        return np.array([hash_long.hash64(b, seed) for b in strings], _U64)
    s = _Bytes(strings)
    n = s.lens
    m = _U64(0xC6A4A7935BD1E995)
    with np.errstate(over="ignore"):
        h = _U64(seed) ^ (n.astype(_U64) * m)
        blocks = n // 8
        for k in range(int(blocks.max()) if s.n else 0):
            live = k < blocks
            w = s.fetch(np.int64(8 * k)) * m
            w ^= w >> _U64(47)
            w *= m
            h = np.where(live, (h ^ w) * m, h)
        rem = (n - blocks * 8).astype(_U64)
        tail = s.fetch(blocks * 8) & np.where(rem > 0, (_U64(1) << (rem * _U64(8))) - _U64(1),
                                              _U64(0))
        h = np.where(rem > 0, (h ^ tail) * m, h)
        h ^= h >> _U64(47)
        h *= m
        h ^= h >> _U64(47)
    return h


def _buckets(hashes: np.ndarray, num_buckets: int, shape) -> np.ndarray:
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
    return (hashes % _U64(num_buckets)).astype(np.int64).reshape(shape)


@op("StringToHashBucketFast")
def StringToHashBucketFast(input, *, num_buckets):
    """StringToHashBucketFast: Fingerprint64(s) mod num_buckets (int64)."""
    x = np.asarray(input, dtype=object)
    return _buckets(fingerprint64(_bytes_list(x)), num_buckets, x.shape)


@op("StringToHashBucketStrong")
def StringToHashBucketStrong(input, *, num_buckets, key):
    """StringToHashBucketStrong: SipHash-2-4 keyed by ``key`` (two ints) mod num_buckets."""
    x = np.asarray(input, dtype=object)
    if len(key) != 2:
        raise ValueError(f"key must have 2 elements, got {len(key)}")
    return _buckets(siphash24(_bytes_list(x), int(key[0]), int(key[1])), num_buckets, x.shape)


@op("StringToHashBucket")
def StringToHashBucket(string_tensor, *, num_buckets):
    """StringToHashBucket: TF's legacy Hash64 mod num_buckets (int64)."""
    x = np.asarray(string_tensor, dtype=object)
    return _buckets(hash64(_bytes_list(x)), num_buckets, x.shape)


@op("Fingerprint")
def Fingerprint(data, method):
    """Fingerprint: FarmHash Fingerprint64 of each row of ``data`` as 8 little-endian uint8.

    Numeric rows are hashed as their raw little-endian bytes; string rows of several strings as
    the concatenated fingerprints of their strings, as TF does.
    """
    data = np.asarray(data)
    m = np.asarray(method)
    m = m.reshape(-1)[0] if m.size == 1 else None
    if (m.decode("utf-8", "replace") if isinstance(m, bytes) else m) != "farmhash64":
        raise ValueError(f"unsupported fingerprint method {m!r} (only 'farmhash64')")
    if data.ndim < 1:
        raise ValueError("Fingerprint needs data of rank >= 1")
    rows = data.shape[0]
    per_row = data.size // rows if rows else 0
    check_array((rows, 8), np.uint8, "the fingerprints")
    if data.dtype == object:
        if per_row == 0 and rows:
            raise ValueError("Fingerprint of rows with no strings is undefined in TF")
        fp = fingerprint64(_bytes_list(data))
        if per_row > 1:
            buf = np.ascontiguousarray(fp.astype("<u8")).view(np.uint8).reshape(rows, -1)
            fp = fingerprint64([r.tobytes() for r in buf])
    else:
        le = data.astype(data.dtype.newbyteorder("<"), copy=False)
        if data.size:
            raw = np.ascontiguousarray(le).view(np.uint8).reshape(rows, -1)
            fp = fingerprint64([r.tobytes() for r in raw])
        else:  # (empty rows hash alike: no loop over 2**31 of them)
            fp = np.full(rows, fingerprint64([b""])[0], _U64)
    return np.ascontiguousarray(fp.astype("<u8")).view(np.uint8).reshape(rows, 8)
