"""The string hashes a string at a time in Python integers (``kernels/strings/hash_long.py``)
against the vectorised kernels, bit for bit, and the time a long string takes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tfdeploy.kernels.strings import hash as H
from tfdeploy.kernels.strings import hash_long as L


def _strings(seed: int, lengths) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths]


@pytest.mark.parametrize("lengths", [range(65, 301), [1000, 4096, 4097, 10_000, 65_537]])
def test_scalar_hashes_are_the_vectorised_ones(lengths):
    strings = _strings(3, lengths)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal([L.fingerprint_long(b) for b in strings],
                                      H._fingerprint_long(strings))
    for b in strings + _strings(4, range(0, 65)):
        assert L.siphash24(b, 12345, -6789) == int(_vectorised(H._siphash24, b, 12345, -6789))
        assert L.hash64(b, 0xDECAFCAFFE) == int(_vectorised(H._hash64, b, 0xDECAFCAFFE))


def _vectorised(fn, b: bytes, *args):
    """The vectorised kernel on one string: batched with enough short ones that it does not
    take the scalar path."""
    batch = [b] + [b"x"] * H._SCALAR_STRINGS
    return fn(batch, *args)[0]


def test_a_long_string_hashes_fast():
    """(1 MB took 2.3 s for Fingerprint64 and Hash64 and 8.5 s for SipHash, vectorised over
    its one string.)"""
    s = np.array([_strings(5, [1 << 20])[0]], object)
    for op, kw in ((H.StringToHashBucketFast, {}), (H.StringToHashBucket, {}),
                   (H.StringToHashBucketStrong, {"key": [1, 2]})):
        t = time.perf_counter()
        op(s, num_buckets=1000, **kw)
        assert time.perf_counter() - t < 3, op.__name__
