"""Spectral and complex kernels: FFT families (complex and real) and complex parts.

numpy.fft computes in double precision; single-precision results are rounded from it, so they
are at least as accurate as TF's (which computes in single precision).
"""

from __future__ import annotations

import numpy as np

from tfdeploy.kernels.common import np_dtype, op
from tfdeploy.runtime.limits import check_array


def _complex_input(x, what="input") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind != "c":
        raise TypeError(f"{what} must be complex64 or complex128, got {x.dtype}")
    return x


def _inner(x: np.ndarray, rank: int, what: str) -> tuple[int, ...]:
    if x.ndim < rank:
        raise ValueError(f"{what} needs an input of rank >= {rank}, got shape {list(x.shape)}")
    return tuple(range(-rank, 0))


def _fft(x, rank: int, inverse: bool, what: str) -> np.ndarray:
    x = _complex_input(x)
    axes = _inner(x, rank, what)
    if x.size == 0:
        return np.zeros(x.shape, x.dtype)
    f = np.fft.ifftn if inverse else np.fft.fftn
    return f(x, axes=axes).astype(x.dtype, copy=False)


@op("FFT")
def FFT(input):
    """FFT: 1-D discrete Fourier transform over the innermost axis."""
    return _fft(input, 1, False, "FFT")


@op("IFFT")
def IFFT(input):
    """IFFT: inverse 1-D DFT over the innermost axis."""
    return _fft(input, 1, True, "IFFT")


@op("FFT2D")
def FFT2D(input):
    """FFT2D: 2-D DFT over the two innermost axes."""
    return _fft(input, 2, False, "FFT2D")


@op("IFFT2D")
def IFFT2D(input):
    """IFFT2D: inverse 2-D DFT over the two innermost axes."""
    return _fft(input, 2, True, "IFFT2D")


@op("FFT3D")
def FFT3D(input):
    """FFT3D: 3-D DFT over the three innermost axes."""
    return _fft(input, 3, False, "FFT3D")


@op("IFFT3D")
def IFFT3D(input):
    """IFFT3D: inverse 3-D DFT over the three innermost axes."""
    return _fft(input, 3, True, "IFFT3D")


def _lengths(fft_length, rank: int, what: str) -> tuple[int, ...]:
    n = tuple(int(v) for v in np.asarray(fft_length).reshape(-1).tolist())
    if len(n) != rank:
        raise ValueError(f"{what}: fft_length must have {rank} elements, got {list(n)}")
    if any(v < 0 for v in n):
        raise ValueError(f"{what}: fft_length must not be negative, got {list(n)}")
    return n


def _fit(x: np.ndarray, axes, sizes) -> np.ndarray:
    """Crop or zero-pad ``x`` along ``axes`` to ``sizes``."""
    idx = [slice(None)] * x.ndim
    pad = [(0, 0)] * x.ndim
    for a, s in zip(axes, sizes):
        idx[a] = slice(0, s)
        pad[a] = (0, max(0, s - x.shape[a]))
    x = x[tuple(idx)]
    return np.pad(x, pad) if any(p[1] for p in pad) else x


def _rfft(x, fft_length, rank: int, what: str, out_dtype: str) -> np.ndarray:
    x = np.asarray(x)
    axes = _inner(x, rank, what)
    n = _lengths(fft_length, rank, what)
    out_dt = np_dtype(out_dtype)
    out_shape = x.shape[:-rank] + n[:-1] + (n[-1] // 2 + 1 if n[-1] else 0,)
    # (a hostile fft_length: numpy's padded signal and transform, in double precision)
    check_array(x.shape[:-rank] + n, np.float64, "the padded signal")
    check_array(out_shape, np.complex128, "the transform")
    if 0 in out_shape or 0 in n:
        return np.zeros(out_shape, out_dt)
    x = _fit(x, axes, n)
    if x.size == 0:
        return np.zeros(out_shape, out_dt)
    return np.fft.rfftn(x, axes=axes).astype(out_dt, copy=False)


def _irfft(x, fft_length, rank: int, what: str, out_dtype: str) -> np.ndarray:
    x = _complex_input(x)
    axes = _inner(x, rank, what)
    n = _lengths(fft_length, rank, what)
    out_dt = np_dtype(out_dtype)
    out_shape = x.shape[:-rank] + n
    check_array(x.shape[:-rank] + n[:-1] + (n[-1] // 2 + 1,), np.complex128,
                "the padded spectrum")
    check_array(out_shape, np.float64, "the transform")
    if 0 in out_shape:
        return np.zeros(out_shape, out_dt)
    x = _fit(x, axes, n[:-1] + (n[-1] // 2 + 1,))
    if x.size == 0:
        return np.zeros(out_shape, out_dt)
    return np.fft.irfftn(x, s=n, axes=axes).astype(out_dt, copy=False)


@op("RFFT")
def RFFT(input, fft_length, *, Tcomplex="complex64"):
    """RFFT: 1-D DFT of a real signal (innermost axis cropped/padded to fft_length)."""
    return _rfft(input, fft_length, 1, "RFFT", Tcomplex)


@op("RFFT2D")
def RFFT2D(input, fft_length, *, Tcomplex="complex64"):
    """RFFT2D: 2-D DFT of a real signal."""
    return _rfft(input, fft_length, 2, "RFFT2D", Tcomplex)


@op("RFFT3D")
def RFFT3D(input, fft_length, *, Tcomplex="complex64"):
    """RFFT3D: 3-D DFT of a real signal."""
    return _rfft(input, fft_length, 3, "RFFT3D", Tcomplex)


@op("IRFFT")
def IRFFT(input, fft_length, *, Treal="float32"):
    """IRFFT: inverse of RFFT, a real signal of length fft_length."""
    return _irfft(input, fft_length, 1, "IRFFT", Treal)


@op("IRFFT2D")
def IRFFT2D(input, fft_length, *, Treal="float32"):
    """IRFFT2D: inverse of RFFT2D."""
    return _irfft(input, fft_length, 2, "IRFFT2D", Treal)


@op("IRFFT3D")
def IRFFT3D(input, fft_length, *, Treal="float32"):
    """IRFFT3D: inverse of RFFT3D."""
    return _irfft(input, fft_length, 3, "IRFFT3D", Treal)


# -- complex numbers -----------------------------------------------------------------------------

@op("Complex")
def Complex(real, imag, *, Tout="complex64"):
    """Complex: real + 1j * imag, broadcast."""
    out_dt = np_dtype(Tout)
    re, im = np.asarray(real), np.asarray(imag)
    # (an empty result may still be too big for numpy to index, even as a broadcast view)
    check_array(np.broadcast_shapes(re.shape, im.shape), out_dt, "the complex result")
    re, im = np.broadcast_arrays(re, im)
    out = np.empty(re.shape, out_dt)
    out.real, out.imag = re, im
    return out


@op("Real")
def Real(input, *, Tout="float32"):
    """Real: the real part."""
    return np.asarray(np.real(input)).astype(np_dtype(Tout))


@op("Imag")
def Imag(input, *, Tout="float32"):
    """Imag: the imaginary part."""
    return np.asarray(np.imag(input)).astype(np_dtype(Tout))


@op("Conj")
def Conj(input):
    """Conj: the complex conjugate (real inputs unchanged)."""
    x = np.asarray(input)
    return np.asarray(np.conj(x)) if x.dtype.kind == "c" else x


@op("Angle")
def Angle(input, *, Tout="float32"):
    """Angle: the argument atan2(imag, real) (0 or pi for real inputs)."""
    return np.asarray(np.angle(input)).astype(np_dtype(Tout))


@op("ComplexAbs")
def ComplexAbs(x, *, Tout="float32"):
    """ComplexAbs: the modulus |x|."""
    return np.asarray(np.abs(x)).astype(np_dtype(Tout))
