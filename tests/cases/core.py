"""Ops the plan handles itself: Const, PlaceholderWithDefault (and Placeholder, in every case)."""

import numpy as np
import tensorflow as tf

from . import Case, rand

CASES = [
    Case("core_const", ("Const", "Placeholder"),
         lambda x: x + tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3)),
         lambda r: [rand(r, (2, 3))], dynamic=True),
    Case("core_const_int64_scalar", ("Const",),
         lambda x: x * tf.constant(np.int64(-7)), lambda r: [rand(r, (4,), "int64")]),
    Case("core_placeholder_with_default", ("PlaceholderWithDefault",),
         lambda x: x * tf.compat.v1.placeholder_with_default(
             tf.constant([1.0, 2.0, 3.0]), shape=[3]),
         lambda r: [rand(r, (2, 3))]),
]
