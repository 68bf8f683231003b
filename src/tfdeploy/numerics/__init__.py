"""Bit-exact numerical helpers: glibc's libm functions and TF's Philox streams, in numpy; float16
rounding; functions of float32 values from tables of cubics (float64) and of quadratics
(float32)."""

import numpy as _np

#: np.clip's ufunc, without np.clip's Python wrapper (~4 us a call: ~60 calls a CNN, 2 a GELU
#: block); the wrapper where numpy does not expose it
clip = getattr(getattr(_np, "_core", None), "umath", None)
clip = getattr(clip, "clip", None) or _np.clip
