"""Array ops: identities, shapes, reshaping, slicing, joining, padding, casting."""

from __future__ import annotations

import numpy as np

from . import Case, adder, i32, i64, rand
from . import raw as _raw
from . import tf as _tf

CASES: list[Case] = []
add = adder(CASES, "array")


STRINGS = np.array([[b"a", b"bc", b""], [b"def", b"\x00x", b"g"]], dtype=object)
ALL_DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64",
              "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128"]


def _rand(rng, shape, dtype):
    if dtype == "bfloat16":
        import ml_dtypes

        return rand(rng, shape, "float32").astype(ml_dtypes.bfloat16)
    return rand(rng, shape, dtype)


# --- identities ---------------------------------------------------------------------------------

for dt in ALL_DTYPES:
    add(f"identity_{dt}", ["Identity"], lambda x: _raw().Identity(input=x),
        lambda r, dt=dt: [_rand(r, (2, 3), dt)], dynamic=True)
add("identity_string", ["Identity"], lambda x: _raw().Identity(input=x), [STRINGS])
add("identity_scalar", ["Identity"], lambda x: _raw().Identity(input=x), [np.float32(2.5)])
for name in ("StopGradient", "Snapshot", "PreventGradient"):
    add(f"{name.lower()}", [name], lambda x, n=name: getattr(_raw(), n)(input=x) * 2,
        lambda r: [rand(r, (3, 4))], dynamic=True)
add("identity_n", ["IdentityN"], lambda x, y: _raw().IdentityN(input=[x, y]),
    lambda r: [rand(r, (3,)), rand(r, (2, 2), "int32")], dynamic=True)
add("ensure_shape", ["EnsureShape"], lambda x: _raw().EnsureShape(input=x, shape=[None, 3]) + 1,
    lambda r: [rand(r, (2, 3))], dynamic=True)
add("ensure_shape_scalar", ["EnsureShape"], lambda x: _raw().EnsureShape(input=x, shape=[]) * 2,
    lambda r: [np.int32(4)], dynamic=True)
add("check_numerics", ["CheckNumerics"],
    lambda x: _raw().CheckNumerics(tensor=x, message="bad") + 1, lambda r: [rand(r, (2, 3))])
add("check_numerics_v2", ["CheckNumericsV2"],
    lambda x: _raw().CheckNumericsV2(tensor=x, message="bad") + 1,
    lambda r: [rand(r, (2, 3), "float64")])


def _noop(x):
    tf = _tf()
    with tf.control_dependencies([_raw().NoOp()]):
        return tf.identity(x)


add("noop", ["NoOp"], _noop, lambda r: [rand(r, (2,))],
    xfail="the converter rightly prunes control-only NoOp nodes; the kernel returns ()")

# --- shapes -------------------------------------------------------------------------------------

add("reshape_infer", ["Reshape"], lambda x, s: _raw().Reshape(tensor=x, shape=s),
    lambda r: [rand(r, (2, 3, 4)), i32(-1, 6)], dynamic=True)
add("reshape_infer_mid", ["Reshape"], lambda x, s: _raw().Reshape(tensor=x, shape=s),
    lambda r: [rand(r, (2, 3, 4), "int64"), i64(4, -1, 2)], dynamic=True)
add("reshape_scalar", ["Reshape"], lambda x, s: _raw().Reshape(tensor=x, shape=s),
    lambda r: [rand(r, (1, 1)), np.zeros((0,), np.int32)], dynamic=True)
add("reshape_from_scalar", ["Reshape"], lambda x, s: _raw().Reshape(tensor=x, shape=s),
    lambda r: [np.float64(3.0), i32(1, 1, -1)], dynamic=True)
add("reshape_empty", ["Reshape"], lambda x, s: _raw().Reshape(tensor=x, shape=s),
    lambda r: [np.zeros((0, 3), np.float32), i32(3, 0, 5)], dynamic=True)
add("reshape_string", ["Reshape"], lambda x, s: _raw().Reshape(tensor=x, shape=s),
    [STRINGS, i32(3, -1)])
add("reshape_bool_const", ["Reshape"], lambda x: _tf().reshape(x, [2, -1, 2]),
    lambda r: [rand(r, (2, 4, 1), "bool")], dynamic=True)
for ot in ("int32", "int64"):
    add(f"shape_{ot}", ["Shape"],
        lambda x, s, ot=ot: _raw().Shape(input=_tf().reshape(x, s), out_type=ot),
        lambda r: [rand(r, (2, 3, 4)), i32(4, -1)], dynamic=True)
add("shape_empty", ["Shape"], lambda x, s: _tf().shape(_tf().reshape(x, s)) * 2,
    lambda r: [rand(r, (2, 0, 5), "bool"), i32(5, -1, 2)], dynamic=True)
add("shape_n", ["ShapeN"],
    lambda x, y, s: _raw().ShapeN(input=[_tf().reshape(x, s), y], out_type="int64"),
    lambda r: [rand(r, (2, 3)), rand(r, (4,)), i32(-1)], dynamic=True)
add("size", ["Size"], lambda x, s: _raw().Size(input=_tf().reshape(x, s), out_type="int64"),
    lambda r: [rand(r, (2, 3)), i32(3, -1)], dynamic=True)
add("rank", ["Rank"], lambda x, s: _raw().Rank(input=_tf().reshape(x, s)),
    lambda r: [rand(r, (2, 3)), i32(1, 3, -1)])
add("squeeze_all", ["Squeeze"], lambda x: _tf().squeeze(x), lambda r: [rand(r, (1, 3, 1, 2))])
add("squeeze_dims", ["Squeeze"], lambda x: _tf().squeeze(x, axis=[0, -2]),
    lambda r: [rand(r, (1, 3, 1, 2), "int32")], dynamic=True)
add("squeeze_scalar", ["Squeeze"], lambda x: _tf().squeeze(x, axis=[0]),
    lambda r: [rand(r, (1,), "bool")], dynamic=True)
add("squeeze_string", ["Squeeze"], lambda x: _tf().squeeze(x, axis=[1]),
    [STRINGS[:, :1]])
for i, ax in enumerate([0, 2, -1, -3]):
    add(f"expand_dims_{i}", ["ExpandDims"], lambda x, a: _raw().ExpandDims(input=x, axis=a),
        lambda r, ax=ax: [rand(r, (2, 3)), np.int32(ax)], dynamic=True)
add("expand_dims_scalar", ["ExpandDims"], lambda x, a: _raw().ExpandDims(input=x, axis=a),
    lambda r: [np.float32(1.5), i64(-1)], dynamic=True)

# --- strided slice ------------------------------------------------------------------------------

# (input shape, begin, end, strides, begin_mask, end_mask, ellipsis, new_axis, shrink)
SLICES = [
    ((5, 6), (1, 2), (4, 5), (1, 1), 0, 0, 0, 0, 0),
    ((5, 6), (-4, -1), (-1, -6), (1, -2), 0, 0, 0, 0, 0),
    ((5, 6), (0, 0), (0, 0), (1, -1), 3, 3, 0, 0, 0),
    ((5, 6), (2, 0), (3, 0), (1, 1), 0, 0, 0, 0, 1),
    ((5, 6), (-1, 3), (0, 4), (1, 1), 0, 0, 0, 0, 3),
    ((2, 3, 4, 5), (0, 1), (0, 3), (1, 1), 0, 0, 1, 0, 0),
    ((2, 3, 4, 5), (1, 0, 2), (2, 0, 3), (1, 1, 1), 0, 0, 2, 0, 5),
    ((2, 3, 4), (0, 0, 1), (0, 0, 3), (1, 1, 1), 0, 0, 0, 2, 0),
    ((2, 3, 4), (0, 0, 0, 1), (2, 0, 0, 3), (1, 1, 1, -1), 0, 0, 4, 2, 0),
    ((6,), (10,), (-10,), (-2,), 0, 0, 0, 0, 0),
    ((6,), (-100,), (100,), (3,), 0, 0, 0, 0, 0),
    ((6,), (-100,), (100,), (-1,), 0, 0, 0, 0, 0),
    ((6,), (4,), (2,), (1,), 0, 0, 0, 0, 0),
    ((4, 5), (0,), (0,), (1,), 0, 0, 0, 1, 0),
    ((4, 5), (1, 0), (3, 0), (1, 1), 0, 0, 0, 3, 0),
    ((3, 4), (), (), (), 0, 0, 0, 0, 0),
    ((3, 0, 4), (1, 0, 1), (3, 0, 3), (1, 1, 1), 0, 0, 0, 0, 0),
    ((7, 8), (6, 7), (0, 1), (-3, -2), 0, 0, 0, 0, 0),
    ((7, 8), (6, 7), (0, 1), (-3, -2), 1, 2, 0, 0, 0),
    ((2, 3, 4), (0, 1), (0, 2), (1, 1), 0, 0, 0, 1, 2),
]

for i, (shape, b, e, s, bm, em, el, na, sh) in enumerate(SLICES):
    add(f"strided_slice_{i}", ["StridedSlice"],
        lambda x, b, e, s, bm=bm, em=em, el=el, na=na, sh=sh: _raw().StridedSlice(
            input=x, begin=b, end=e, strides=s, begin_mask=bm, end_mask=em, ellipsis_mask=el,
            new_axis_mask=na, shrink_axis_mask=sh),
        lambda r, shape=shape, b=b, e=e, s=s: [rand(r, shape), np.array(b, np.int32),
                                               np.array(e, np.int32), np.array(s, np.int32)],
        dynamic=True)
add("strided_slice_int64_idx", ["StridedSlice"],
    lambda x, b, e, s: _raw().StridedSlice(input=x, begin=b, end=e, strides=s, end_mask=1),
    lambda r: [rand(r, (4, 3), "int8"), i64(1, 2), i64(0, 3), i64(2, 1)], dynamic=True)
add("strided_slice_python", ["StridedSlice"], lambda x: x[1:, ::-1, _tf().newaxis, ..., 2],
    lambda r: [rand(r, (3, 4, 2, 5), "float64")], dynamic=True)
add("strided_slice_python_last", ["StridedSlice"], lambda x: x[..., -1],
    lambda r: [rand(r, (2, 3, 4), "bool")], dynamic=True)
add("strided_slice_string", ["StridedSlice"], lambda x: x[:, 1:], [STRINGS])
add("strided_slice_update", ["TensorStridedSliceUpdate"],
    lambda x, v, b: _raw().TensorStridedSliceUpdate(input=x, begin=b, end=i32(0, 5),
                                                    strides=i32(1, 2), value=v, end_mask=1),
    lambda r: [rand(r, (4, 6)), rand(r, (3, 2)), i32(1, 1)])
add("strided_slice_update_empty_slice", ["TensorStridedSliceUpdate"],  # (any value: TF
    lambda x, v, b: _raw().TensorStridedSliceUpdate(  # writes nothing, checks nothing)
        input=x, begin=b, end=i32(0, 5), strides=i32(1, 2), value=v, end_mask=1),
    lambda r: [rand(r, (4, 6)), rand(r, (3, 2)), i32(0, -1)], dynamic=True)
add("strided_slice_update_broadcast", ["TensorStridedSliceUpdate"],
    lambda x, v, b: _raw().TensorStridedSliceUpdate(
        input=x, begin=b, end=i32(0, 5), strides=i32(1, 2), value=v, end_mask=1),
    lambda r: [rand(r, (4, 6)), rand(r, (2,)), i32(1, 1)])
add("strided_slice_update_mismatch", ["TensorStridedSliceUpdate"],
    lambda x, v, b: _raw().TensorStridedSliceUpdate(
        input=x, begin=b, end=i32(0, 5), strides=i32(1, 2), value=v, end_mask=1),
    lambda r: [rand(r, (4, 6)), rand(r, (3, 3)), i32(1, 1)],
    rejects=r"cannot broadcast the value's shape \[3, 3\] into the slice's shape \[3, 2\]")
add("slice", ["Slice"], lambda x, b, s: _raw().Slice(input=x, begin=b, size=s),
    lambda r: [rand(r, (4, 5, 6)), i32(1, 0, 2), i32(2, -1, 3)], dynamic=True)
add("slice_int64_empty", ["Slice"], lambda x, b, s: _raw().Slice(input=x, begin=b, size=s),
    lambda r: [rand(r, (4, 5), "int64"), i64(4, 1), i64(0, 2)], dynamic=True)

# --- joining ------------------------------------------------------------------------------------

for i, ax in enumerate([0, 1, -1, -2]):
    add(f"pack_axis{i}", ["Pack"], lambda x, y, z, ax=ax: _tf().stack([x, y, z], axis=ax),
        lambda r: [rand(r, (2, 3)), rand(r, (2, 3)), rand(r, (2, 3))], dynamic=True)
add("pack_scalars", ["Pack"], lambda x, y: _tf().stack([x, y]),
    lambda r: [np.int32(3), np.int32(-4)], dynamic=True)
add("pack_one", ["Pack"], lambda x: _tf().stack([x], axis=1),
    lambda r: [rand(r, (2, 2), "bool")], dynamic=True)
add("pack_string", ["Pack"], lambda x, y: _tf().stack([x, y], axis=1), [STRINGS, STRINGS])
add("pack_empty", ["Pack"], lambda x, y: _tf().stack([x, y], axis=-1),
    [np.zeros((0, 2), np.complex64), np.zeros((0, 2), np.complex64)], dynamic=True)
for i, ax in enumerate([0, 1, -1]):
    add(f"concat_axis{i}", ["ConcatV2"],
        lambda x, y, a: _raw().ConcatV2(values=[x, y, x], axis=a),
        lambda r, ax=ax: [rand(r, (2, 2, 2)), rand(r, (2, 2, 2)), np.int32(ax)], dynamic=True)
add("concat_uneven", ["ConcatV2"], lambda x, y, z: _tf().concat([x, y, z], axis=1),
    lambda r: [rand(r, (2, 1), "int64"), rand(r, (2, 0), "int64"), rand(r, (2, 3), "int64")],
    dynamic=True)
add("concat_int64_axis", ["ConcatV2"], lambda x, y, a: _raw().ConcatV2(values=[x, y], axis=a),
    lambda r: [rand(r, (3,), "bool"), rand(r, (2,), "bool"), i64(-1).reshape(())])
add("concat_string", ["ConcatV2"], lambda x, y: _tf().concat([x, y], axis=0), [STRINGS, STRINGS])
add("concat_float16", ["ConcatV2"], lambda x, y: _tf().concat([x, y], axis=-1),
    lambda r: [rand(r, (2, 3), "float16"), rand(r, (2, 1), "float16")], dynamic=True)
add("concat_v1", ["Concat"], lambda d, x, y: _raw().Concat(concat_dim=d, values=[x, y]),
    lambda r: [np.int32(1), rand(r, (2, 3)), rand(r, (2, 2))])
for i, perm in enumerate([(1, 0), (2, 0, 1), (0, 3, 1, 2), ()]):
    nd = len(perm)
    add(f"transpose_{i}", ["Transpose"], lambda x, p: _raw().Transpose(x=x, perm=p),
        lambda r, perm=perm, nd=nd: [rand(r, (2, 3, 4, 5)[:nd]), np.array(perm, np.int32)],
        dynamic=True)
add("transpose_int64_perm", ["Transpose"], lambda x, p: _raw().Transpose(x=x, perm=p),
    lambda r: [rand(r, (2, 3), "uint8"), i64(1, 0)], dynamic=True)
add("transpose_string", ["Transpose"], lambda x: _tf().transpose(x), [STRINGS])
add("transpose_negative_perm", ["Transpose"], lambda x, p: _raw().Transpose(x=x, perm=p),
    lambda r: [rand(r, (2, 3, 4)), i32(-1, 0, -2)], dynamic=True)
add("transpose_repeated_perm", ["Transpose"], lambda x, p: _raw().Transpose(x=x, perm=p),
    lambda r: [rand(r, (2, 3)), i32(1, -1)], rejects=r"perm \[1, -1\] is not a permutation")
add("conjugate_transpose_negative_perm", ["ConjugateTranspose"],
    lambda x, p: _raw().ConjugateTranspose(x=x, perm=p),
    lambda r: [rand(r, (2, 3), "complex128"), i32(-1, 0)])
add("conjugate_transpose", ["ConjugateTranspose"],
    lambda x, p: _raw().ConjugateTranspose(x=x, perm=p),
    lambda r: [rand(r, (2, 3), "complex64"), i32(1, 0)], dynamic=True)

# --- padding ------------------------------------------------------------------------------------

add("pad", ["Pad"], lambda x, p: _raw().Pad(input=x, paddings=p),
    lambda r: [rand(r, (2, 3)), i32(1, 0, 2, 3).reshape(2, 2)], dynamic=True)
add("pad_int64_4d", ["Pad"], lambda x, p: _raw().Pad(input=x, paddings=p),
    lambda r: [rand(r, (1, 2, 3, 2), "int64"), i64(0, 0, 1, 1, 2, 0, 0, 0).reshape(4, 2)],
    dynamic=True)
add("pad_none", ["Pad"], lambda x, p: _raw().Pad(input=x, paddings=p),
    lambda r: [rand(r, (2, 3), "bool"), np.zeros((2, 2), np.int32)], dynamic=True)
add("pad_scalar", ["Pad"], lambda x, p: _raw().Pad(input=x, paddings=p),
    lambda r: [np.float32(1.0), np.zeros((0, 2), np.int32)])
add("pad_string", ["Pad"], lambda x: _tf().pad(x, [[1, 0], [0, 1]]), [STRINGS])
add("pad_v2", ["PadV2"], lambda x, p, c: _raw().PadV2(input=x, paddings=p, constant_values=c),
    lambda r: [rand(r, (2, 3)), i32(1, 1, 0, 2).reshape(2, 2), np.float32(-7.5)],
    dynamic=True)
add("pad_v2_complex", ["PadV2"],
    lambda x, c: _raw().PadV2(input=x, paddings=[[2, 1]], constant_values=c),
    lambda r: [rand(r, (3,), "complex128"), np.complex128(1 + 2j)], dynamic=True)
for mode in ("REFLECT", "SYMMETRIC"):
    m = mode.lower()
    add(f"mirror_pad_{m}", ["MirrorPad"],
        lambda x, p, mode=mode: _raw().MirrorPad(input=x, paddings=p, mode=mode),
        lambda r: [rand(r, (3, 4)), i32(2, 1, 0, 3).reshape(2, 2)], dynamic=True)
    add(f"mirror_pad_{m}_int", ["MirrorPad"],
        lambda x, p, mode=mode: _raw().MirrorPad(input=x, paddings=p, mode=mode),
        lambda r: [rand(r, (2, 3, 2), "int32"), i64(1, 1, 2, 2, 0, 1).reshape(3, 2)])

# --- casting ------------------------------------------------------------------------------------

CASTS = [("float32", "int32"), ("float32", "int64"), ("float64", "int8"), ("float32", "uint8"),
         ("float32", "float16"), ("float64", "float32"), ("float32", "bfloat16"),
         ("bfloat16", "float32"), ("float16", "float64"), ("float16", "int32"),
         ("bfloat16", "int32"), ("int32", "bfloat16"), ("float16", "bfloat16"),
         ("int32", "float32"), ("int64", "float64"), ("int64", "int32"), ("int32", "int8"),
         ("uint8", "int32"), ("int8", "uint8"), ("uint16", "int64"), ("uint32", "uint64"),
         ("bool", "float32"), ("bool", "int32"), ("float32", "bool"), ("int64", "bool"),
         ("float32", "complex64"), ("complex64", "float32"), ("complex128", "int32"),
         ("complex64", "bool"), ("complex64", "complex128"), ("int32", "complex128"),
         ("float64", "float16"), ("bool", "complex64"), ("float64", "bfloat16"),
         ("int64", "uint8"), ("int32", "uint16")]



def _cast_range(src, dst):
    # out-of-range float -> int casts are undefined in TF (the result depends on the size)
    if src in ("float16", "float32", "float64", "bfloat16", "complex64", "complex128"):
        if dst.startswith("uint"):
            return 0, 250
        if dst.startswith("int"):
            return -120, 120
    return (-300, 300) if src in ("int32", "int64", "float32", "float64") else (-3, 3)


for src, dst in CASTS:
    lo, hi = _cast_range(src, dst)
    add(f"cast_{src}_{dst}", ["Cast"], lambda x, dst=dst: _tf().cast(x, dst),
        lambda r, src=src, lo=lo, hi=hi: [_rand(r, (3, 4), src) if src == "bfloat16"
                                          else rand(r, (3, 4), src, lo, hi)],
        dynamic=True, out_dtypes=(dst,))
for src, dst in [("float32", "bfloat16"), ("float32", "float16"), ("float64", "float32"),
                 ("float64", "float16"), ("float64", "bfloat16"), ("float16", "bfloat16"),
                 ("complex128", "complex64"), ("complex128", "float32"),
                 ("complex64", "float16"), ("float64", "complex64"), ("int64", "float32")]:
    add(f"cast_truncate_{src}_{dst}", ["Cast"],
        lambda x, dst=dst: _raw().Cast(x=x, DstT=dst, Truncate=True),
        lambda r, src=src: [rand(r, (50,), src, -1000, 1000)], out_dtypes=(dst,))
add("cast_special", ["Cast"], lambda x: _tf().cast(x, "float16"),
    [np.array([np.nan, np.inf, -np.inf, 65520.0, 1e-8, -0.0], np.float32)])
add("cast_scalar_empty", ["Cast"], lambda x, y: (_tf().cast(x, "int64"), _tf().cast(y, "bool")),
    lambda r: [np.float32(-2.7), np.zeros((0, 3), np.float64)], dynamic=True)
add("bitcast_same", ["Bitcast"], lambda x: _raw().Bitcast(input=x, type="int32"),
    lambda r: [rand(r, (2, 3))], dynamic=True, out_dtypes=("int32",))
add("bitcast_narrow", ["Bitcast"], lambda x: _raw().Bitcast(input=x, type="uint8"),
    lambda r: [rand(r, (2, 3), "int32")], dynamic=True, out_dtypes=("uint8",))
add("bitcast_scalar", ["Bitcast"], lambda x: _raw().Bitcast(input=x, type="uint16"),
    [np.float32(1.5)], out_dtypes=("uint16",))
add("bitcast_complex", ["Bitcast"], lambda x: _raw().Bitcast(input=x, type="float64"),
    lambda r: [rand(r, (3,), "complex64")], out_dtypes=("float64",))
add("bitcast_widen", ["Bitcast"], lambda x: _raw().Bitcast(input=x, type="float64"),
    lambda r: [rand(r, (3, 4), "int16")], dynamic=True, out_dtypes=("float64",))

# --- creation -----------------------------------------------------------------------------------

add("fill", ["Fill"], lambda d, v: _raw().Fill(dims=d, value=v),
    lambda r: [i32(2, 3), np.float32(1.5)], dynamic=True)
add("fill_int64_dims_bool", ["Fill"], lambda d, v: _raw().Fill(dims=d, value=v),
    lambda r: [i64(3, 0, 2), np.bool_(True)], dynamic=True)
add("fill_scalar_string", ["Fill"], lambda d, v: _raw().Fill(dims=d, value=v),
    [np.zeros((0,), np.int32), np.array(b"ab", dtype=object)])
add("empty", ["Empty"], lambda d: _raw().Empty(shape=d, dtype="int32", init=True),
    lambda r: [i32(2, 3)])
for dt in ("float32", "int64", "bool", "complex64", "float16"):
    add(f"zeros_like_{dt}", ["ZerosLike"], lambda x: _raw().ZerosLike(x=x),
        lambda r, dt=dt: [rand(r, (2, 3), dt)], dynamic=True)
    add(f"ones_like_{dt}", ["OnesLike"], lambda x: _raw().OnesLike(x=x),
        lambda r, dt=dt: [rand(r, (3,), dt)], dynamic=True)
RANGES = [("int32", 0, 10, 3), ("int32", 10, -3, -4), ("int64", -5, 5, 1), ("int32", 3, 3, 1),
          ("float32", 0.1, 100.0, 0.7), ("float32", 5.0, -7.0, -0.37), ("float64", 1.0, 2.0, 0.3),
          ("float16", -3.3, 40.0, 0.013), ("bfloat16", 0.5, 300.0, 1.7)]
for dt, a, b, d in RANGES:
    add(f"range_{dt}_{a}_{b}_{d}".replace("-", "m").replace(".", "p"), ["Range"],
        lambda s, lim, de: _raw().Range(start=s, limit=lim, delta=de),
        lambda r, dt=dt, a=a, b=b, d=d: [np.asarray(v).astype(
            _rand(r, (), dt).dtype) for v in (a, b, d)])
for dt in ("float32", "float64"):
    for n in (1, 2, 7, 50):
        add(f"linspace_{dt}_{n}", ["LinSpace"],
            lambda a, b, k: _raw().LinSpace(start=a, stop=b, num=k),
            lambda r, dt=dt, n=n: [np.asarray(0.3, dt), np.asarray(-7.7, dt), np.int32(n)])
add("linspace_int64_num", ["LinSpace"], lambda a, b, k: _raw().LinSpace(start=a, stop=b, num=k),
    [np.float32(1.0), np.float32(1.0), np.int64(4)])

# --- splitting, tiling, reversing ---------------------------------------------------------------

for i, (ax, n) in enumerate([(0, 2), (1, 3), (-1, 4), (2, 1)]):
    add(f"split_{i}", ["Split"], lambda a, x, n=n: _raw().Split(axis=a, value=x, num_split=n),
        lambda r, ax=ax: [np.int32(ax), rand(r, (4, 6, 8))], dynamic=True)
add("split_string", ["Split"], lambda x: _tf().split(x, 3, axis=1), [STRINGS])
for i, (sizes, ax) in enumerate([((1, 2, 3), 1), ((2, -1), 0), ((0, 6), -1), ((4,), 0)]):
    n = len(sizes)
    add(f"split_v_{i}", ["SplitV"],
        lambda x, s, a, n=n: _raw().SplitV(value=x, size_splits=s, axis=a, num_split=n),
        lambda r, sizes=sizes, ax=ax: [rand(r, (4, 6), "int32"), np.array(sizes, np.int64),
                                       np.int32(ax)], dynamic=True)
for i, ax in enumerate([0, 1, -1]):
    add(f"unpack_{i}", ["Unpack"], lambda x, ax=ax: _tf().unstack(x, axis=ax),
        lambda r: [rand(r, (2, 3, 4))])
add("unpack_bool_vector", ["Unpack"], lambda x: _tf().unstack(x), lambda r: [rand(r, (3,), "bool")])
add("tile", ["Tile"], lambda x, m: _raw().Tile(input=x, multiples=m),
    lambda r: [rand(r, (2, 3)), i32(2, 3)], dynamic=True)
add("tile_3d_int64", ["Tile"], lambda x, m: _raw().Tile(input=x, multiples=m),
    lambda r: [rand(r, (1, 2, 3), "int8"), i64(3, 1, 0)], dynamic=True)
add("tile_string", ["Tile"], lambda x: _tf().tile(x, [1, 2]), [STRINGS])
add("tile_scalar", ["Tile"], lambda x, m: _raw().Tile(input=x, multiples=m),
    lambda r: [np.float64(2.0), np.zeros((0,), np.int32)])
for i, axes in enumerate([(0,), (1, -1), (), (0, 1, 2)]):
    add(f"reverse_v2_{i}", ["ReverseV2"], lambda x, a: _raw().ReverseV2(tensor=x, axis=a),
        lambda r, axes=axes: [rand(r, (2, 3, 4)), np.array(axes, np.int32)], dynamic=True)
add("reverse_v2_string", ["ReverseV2"], lambda x: _tf().reverse(x, [1]), [STRINGS])
add("reverse_v1", ["Reverse"], lambda x, d: _raw().Reverse(tensor=x, dims=d),
    lambda r: [rand(r, (2, 3, 4), "int16"), np.array([True, False, True])])
for i, (sh, ax) in enumerate([(2, 0), ((1, -2), (0, 1)), ((3, 4), (1, 1)), (-7, -1)]):
    add(f"roll_{i}", ["Roll"], lambda x, s, a: _raw().Roll(input=x, shift=s, axis=a),
        lambda r, sh=sh, ax=ax: [rand(r, (4, 5)), np.array(sh, np.int32), np.array(ax, np.int64)],
        dynamic=True)
for i, (sd, bd) in enumerate([(1, 0), (0, 1), (2, 0), (1, 2)]):
    add(f"reverse_sequence_{i}", ["ReverseSequence"],
        lambda x, ln, sd=sd, bd=bd: _raw().ReverseSequence(input=x, seq_lengths=ln, seq_dim=sd,
                                                           batch_dim=bd),
        lambda r, sd=sd, bd=bd: [rand(r, (4, 5, 3)),
                                 r.integers(0, (4, 5, 3)[sd] + 1, (4, 5, 3)[bd]).astype(
                                     np.int64)], dynamic=True)

# --- broadcasting and shape arithmetic ----------------------------------------------------------

add("broadcast_to", ["BroadcastTo"], lambda x, s: _raw().BroadcastTo(input=x, shape=s),
    lambda r: [rand(r, (3, 1)), i32(2, 3, 4)], dynamic=True)
add("broadcast_to_scalar_int64", ["BroadcastTo"],
    lambda x, s: _raw().BroadcastTo(input=x, shape=s),
    lambda r: [np.int64(5), i64(2, 0)], dynamic=True)
add("broadcast_args", ["BroadcastArgs"], lambda a, b: _raw().BroadcastArgs(s0=a, s1=b),
    lambda r: [i32(2, 1, 3), i32(4, 1)], dynamic=True)
add("broadcast_args_int64", ["BroadcastArgs"], lambda a, b: _raw().BroadcastArgs(s0=a, s1=b),
    lambda r: [i64(), i64(5, 0)], dynamic=True)
add("concat_offset", ["ConcatOffset"],
    lambda d, a, b, c: _raw().ConcatOffset(concat_dim=d, shape=[a, b, c]),
    lambda r: [np.int32(1), i32(2, 3, 5), i32(2, 7, 5), i32(2, 1, 5)])
add("concat_offset_mismatch", ["ConcatOffset"],  # (the dims off the axis must match)
    lambda d, a, b: _raw().ConcatOffset(concat_dim=d, shape=[a, b]),
    lambda r: [np.int32(1), i32(2, 3, 5), i32(2, 7, 4)], dynamic=True,
    rejects=r"all dimensions except 1 must match; input 1 has shape \[2, 7, 4\]")
add("concat_offset_ranks", ["ConcatOffset"],
    lambda d, a, b: _raw().ConcatOffset(concat_dim=d, shape=[a, b]),
    lambda r: [np.int32(0), i32(2, 3, 5), i32(4, 3)],
    rejects=r"input 1 must be a vector of 3 dims like input 0, got shape \[2\]")
add("concat_offset_neg_int64", ["ConcatOffset"],
    lambda d, a, b: _raw().ConcatOffset(concat_dim=d, shape=[a, b]),
    lambda r: [np.int32(-1), i64(2, 3), i64(2, 4)])
add("invert_permutation", ["InvertPermutation"], lambda x: _raw().InvertPermutation(x=x),
    lambda r: [r.permutation(7).astype(np.int32)], dynamic=True)
add("invert_permutation_int64", ["InvertPermutation"], lambda x: _raw().InvertPermutation(x=x),
    lambda r: [r.permutation(5).astype(np.int64)])

# --- gather and scatter -------------------------------------------------------------------------

# (params shape, indices shape, axis, batch_dims)
GATHERS = [((5, 3), (4,), 0, 0), ((5, 3), (2, 2), 1, 0), ((5, 3, 4), (2,), -1, 0),
           ((5,), (), 0, 0), ((2, 5, 3), (2, 4), 1, 1), ((2, 3, 5, 4), (2, 3, 2), 2, 2),
           ((2, 3, 5, 4), (2, 6), 2, 1), ((2, 3, 5, 4), (2, 3, 2), -1, -1), ((3, 4), (0,), 1, 0)]
for i, (ps, ix, ax, bd) in enumerate(GATHERS):
    dim = ps[ax]
    add(f"gather_v2_{i}", ["GatherV2"],
        lambda p, x, a, bd=bd: _raw().GatherV2(params=p, indices=x, axis=a, batch_dims=bd),
        lambda r, ps=ps, ix=ix, ax=ax, dim=dim: [rand(r, ps), r.integers(0, dim, ix).astype(
            np.int32), np.int32(ax)], dynamic=True)
add("gather_v2_int64_string", ["GatherV2"],
    lambda p, x: _tf().gather(p, x, axis=1), [STRINGS, i64(2, 0, 0)])
add("gather_v2_bool", ["GatherV2"], lambda p, x, a: _raw().GatherV2(params=p, indices=x, axis=a),
    lambda r: [rand(r, (4, 3), "bool"), i64(3, 1), np.int64(0)], dynamic=True)
add("gather_v1", ["Gather"], lambda p, x: _raw().Gather(params=p, indices=x),
    lambda r: [rand(r, (5, 2), "int64"), i32(4, 0, 4)], dynamic=True)
GATHER_ND = [((4, 5), (3, 2)), ((4, 5, 2), (2, 3, 1)), ((4, 5), (2, 0)), ((3, 4, 2), (2,)),
             ((3, 2), (0, 2))]
for i, (ps, ix) in enumerate(GATHER_ND):
    add(f"gather_nd_{i}", ["GatherNd"], lambda p, x: _raw().GatherNd(params=p, indices=x),
        lambda r, ps=ps, ix=ix: [rand(r, ps), np.stack(
            [r.integers(0, ps[k], ix[:-1]) for k in range(ix[-1])] or [np.zeros(ix[:-1])],
            axis=-1).astype(np.int32)[..., :ix[-1]]], dynamic=True)
add("gather_nd_string", ["GatherNd"], lambda p, x: _tf().gather_nd(p, x),
    [STRINGS, i64(1, 2, 0, 0).reshape(2, 2)])
add("gather_nd_ignore", ["GatherNd"],
    lambda p, x: _raw().GatherNd(params=p, indices=x, bad_indices_policy="IGNORE"),
    lambda r: [rand(r, (3, 4)), i32(0, 1, 5, 0, 2, 3, -1, 1).reshape(4, 2)])

# (output shape, index depth, number of updates)
SCATTERS = [((6,), 1, 4), ((4, 3), 1, 3), ((4, 3), 2, 5), ((2, 3, 4), 2, 3), ((3, 2), 2, 0)]


def _scatter_inputs(r, shape, k, n, dtype="float32", unique=False):
    if unique:
        flat = r.permutation(int(np.prod(shape[:k])))[:n]
        idx = np.stack(np.unravel_index(flat, shape[:k]), axis=-1)
    else:
        idx = np.stack([r.integers(0, shape[j], n) for j in range(k)], axis=-1)
    return idx.astype(np.int32).reshape(n, k), rand(r, (n,) + shape[k:], dtype)


for i, (shape, k, n) in enumerate(SCATTERS):
    add(f"scatter_nd_{i}", ["ScatterNd"],
        lambda x, u, s: _raw().ScatterNd(indices=x, updates=u, shape=s),
        lambda r, shape=shape, k=k, n=n: [*_scatter_inputs(r, shape, k, n),
                                          np.array(shape, np.int32)], dynamic=True)
add("scatter_nd_int64_dupes", ["ScatterNd"],
    lambda x, u, s: _raw().ScatterNd(indices=x, updates=u, shape=s),
    lambda r: [i64(1, 1, 3, 1).reshape(4, 1), rand(r, (4, 2), "int64"), i64(5, 2)])
add("scatter_nd_ignore", ["ScatterNd"],
    lambda x, u, s: _raw().ScatterNd(indices=x, updates=u, shape=s, bad_indices_policy="IGNORE"),
    lambda r: [i32(1, 7, -1, 0).reshape(4, 1), rand(r, (4,)), i32(3)])
# indices into an empty output: TF refuses them, whatever the bad-indices policy
add("scatter_nd_empty_output_ignore", ["ScatterNd"],
    lambda x, u, s: _raw().ScatterNd(indices=x, updates=u, shape=s, bad_indices_policy="IGNORE"),
    lambda r: [i32(1, 2, 0, 0).reshape(4, 1), rand(r, (4,)), i32(0)],
    rejects=r"empty output of shape \[0\] \(indices shape \[4, 1\]\)")
add("scatter_nd_empty_slices", ["ScatterNd"],
    lambda x, u, s: _raw().ScatterNd(indices=x, updates=u, shape=s),
    lambda r: [i32(1).reshape(1, 1), np.ones((1, 0), np.float32), i32(2, 0)], dynamic=True,
    rejects=r"empty output of shape \[2, 0\]")
add("scatter_nd_empty_indices_empty_output", ["ScatterNd"],
    lambda x, u, s: _raw().ScatterNd(indices=x, updates=u, shape=s),
    lambda r: [np.zeros((0, 1), np.int32), np.ones(0, np.float32), i32(0)])
add("tensor_scatter_add_empty_tensor", ["TensorScatterAdd"],  # (a [2, 0] tensor of dims TF's
    lambda d, x, u: _raw().TensorScatterAdd(  # shape inference cannot see: it refuses it)
        tensor=_tf().zeros(d), indices=x, updates=u),
    lambda r: [i32(2, 0), i32(1).reshape(1, 1), np.ones((1, 0), np.float32)],
    dynamic=True, rejects=r"TensorScatterAdd: indices and updates specified for an empty")
for name in ("Update", "Add", "Sub", "Max", "Min"):
    op_name = f"TensorScatter{name}"
    for i, (shape, k, n) in enumerate(SCATTERS[:4]):
        add(f"tensor_scatter_{name.lower()}_{i}", [op_name],
            lambda t, x, u, op_name=op_name: getattr(_raw(), op_name)(tensor=t, indices=x,
                                                                       updates=u),
            lambda r, shape=shape, k=k, n=n, name=name: [
                rand(r, shape), *_scatter_inputs(r, shape, k, n, unique=name == "Update")],
            dynamic=i == 2)
    add(f"tensor_scatter_{name.lower()}_int32", [op_name],
        lambda t, x, u, op_name=op_name: getattr(_raw(), op_name)(tensor=t, indices=x, updates=u),
        lambda r, name=name: [rand(r, (4, 3), "int32"),
                              *_scatter_inputs(r, (4, 3), 2, 4, "int32", unique=True)])

# --- select, where, one-hot, set difference -----------------------------------------------------

add("select_v2_broadcast", ["SelectV2"], lambda c, a, b: _raw().SelectV2(condition=c, t=a, e=b),
    lambda r: [rand(r, (3, 1), "bool"), rand(r, (1, 4)), rand(r, (3, 4))], dynamic=True)
add("select_v2_scalar_cond", ["SelectV2"],
    lambda c, a, b: _raw().SelectV2(condition=c, t=a, e=b),
    lambda r: [np.bool_(False), rand(r, (2, 3), "int32"), rand(r, (2, 3), "int32")])
add("select_v2_string", ["SelectV2"], lambda c, a, b: _tf().where(c, a, b),
    [np.array([[True, False, True], [False, False, True]]), STRINGS, STRINGS[::-1]])
add("select_same_shape", ["Select"], lambda c, a, b: _raw().Select(condition=c, x=a, y=b),
    lambda r: [rand(r, (2, 3), "bool"), rand(r, (2, 3)), rand(r, (2, 3))], dynamic=True)
add("select_vector_cond", ["Select"], lambda c, a, b: _raw().Select(condition=c, x=a, y=b),
    lambda r: [rand(r, (3,), "bool"), rand(r, (3, 2, 2), "int64"), rand(r, (3, 2, 2), "int64")],
    dynamic=True)
add("select_scalar_cond", ["Select"], lambda c, a, b: _raw().Select(condition=c, x=a, y=b),
    lambda r: [np.bool_(True), rand(r, (2,), "complex64"), rand(r, (2,), "complex64")])
for dt in ("bool", "float32", "int32", "complex64"):
    add(f"where_{dt}", ["Where"], lambda x: _raw().Where(condition=x),
        lambda r, dt=dt: [rand(r, (3, 4, 2), dt, -1, 1)], dynamic=True)
add("where_empty", ["Where"], lambda x: _raw().Where(condition=x),
    lambda r: [np.zeros((2, 0), np.bool_)], dynamic=True)
for i, (ix_shape, axis, dt) in enumerate([((4,), -1, "float32"), ((2, 3), 0, "int32"),
                                          ((2, 3), 1, "float64"), ((), -1, "bool"),
                                          ((3,), 1, "int64")]):
    add(f"one_hot_{i}", ["OneHot"],
        lambda x, d, on, off, axis=axis: _raw().OneHot(indices=x, depth=d, on_value=on,
                                                       off_value=off, axis=axis),
        lambda r, ix_shape=ix_shape, dt=dt: [
            r.integers(-1, 6, ix_shape).astype(np.int64 if ix_shape == (3,) else np.int32),
            np.int32(5), np.asarray(1, dt) if dt == "bool" else rand(r, (), dt),
            np.asarray(0, dt) if dt == "bool" else rand(r, (), dt)], dynamic=True)
add("one_hot_uint8", ["OneHot"], lambda x: _tf().one_hot(x, 4, dtype="float16"),
    lambda r: [r.integers(0, 6, (5,)).astype(np.uint8)], dynamic=True)
add("list_diff", ["ListDiff"], lambda x, y: _raw().ListDiff(x=x, y=y),
    lambda r: [i32(1, 2, 3, 4, 5, 6, 2), i32(2, 4, 9)], dynamic=True)
add("list_diff_int64_idx", ["ListDiff"], lambda x, y: _raw().ListDiff(x=x, y=y, out_idx="int64"),
    lambda r: [np.array([1.5, 2.5, 1.5], np.float32), np.array([], np.float32)])
add("list_diff_string", ["ListDiff"], lambda x, y: _raw().ListDiff(x=x, y=y),
    [np.array([b"a", b"b", b"c"], dtype=object), np.array([b"b"], dtype=object)])
add("unravel_index", ["UnravelIndex"], lambda x, d: _raw().UnravelIndex(indices=x, dims=d),
    lambda r: [i32(0, 5, 23, 11), i32(2, 3, 4)], dynamic=True)
add("unravel_index_scalar", ["UnravelIndex"],
    lambda x, d: _raw().UnravelIndex(indices=x, dims=d), lambda r: [np.int64(7), i64(3, 4)])

# --- space, batch and depth ---------------------------------------------------------------------

add("space_to_batch_nd", ["SpaceToBatchND"],
    lambda x, b, p: _raw().SpaceToBatchND(input=x, block_shape=b, paddings=p),
    lambda r: [rand(r, (2, 5, 6, 3)), i32(2, 3), i32(1, 0, 0, 0).reshape(2, 2)], dynamic=False)
add("space_to_batch_nd_1d_rest", ["SpaceToBatchND"],
    lambda x, b, p: _raw().SpaceToBatchND(input=x, block_shape=b, paddings=p),
    lambda r: [rand(r, (1, 5, 2, 3), "int32"), i64(3), i64(2, 2).reshape(1, 2)], dynamic=False)
add("batch_to_space_nd", ["BatchToSpaceND"],
    lambda x, b, c: _raw().BatchToSpaceND(input=x, block_shape=b, crops=c),
    lambda r: [rand(r, (12, 3, 2, 2)), i32(2, 3), i32(1, 0, 0, 2).reshape(2, 2)], dynamic=False)
add("batch_to_space_nd_1d", ["BatchToSpaceND"],
    lambda x, b, c: _raw().BatchToSpaceND(input=x, block_shape=b, crops=c),
    lambda r: [rand(r, (6, 3, 2), "float64"), i64(3), i64(1, 1).reshape(1, 2)], dynamic=False)
add("space_to_batch_v1", ["SpaceToBatch"],
    lambda x, p: _raw().SpaceToBatch(input=x, paddings=p, block_size=2),
    lambda r: [rand(r, (1, 3, 4, 2)), i32(1, 0, 0, 0).reshape(2, 2)])
add("batch_to_space_v1", ["BatchToSpace"],
    lambda x, c: _raw().BatchToSpace(input=x, crops=c, block_size=2),
    lambda r: [rand(r, (4, 2, 2, 1)), i32(0, 1, 1, 0).reshape(2, 2)])
add("dilated_conv", ["SpaceToBatchND", "BatchToSpaceND"],
    lambda x, w: _tf().nn.atrous_conv2d(x, w, rate=2, padding="SAME"),
    lambda r: [rand(r, (1, 9, 9, 2)), rand(r, (3, 3, 2, 3))], rtol=1e-5, atol=1e-5)
# TF's CPU kernels take NHWC only (the NCHW kernels follow the layout of TF's GPU kernels)
for b in (2, 3):
    add(f"depth_to_space_{b}", ["DepthToSpace"],
        lambda x, b=b: _raw().DepthToSpace(input=x, block_size=b),
        lambda r, b=b: [rand(r, (2, 2, 3, 2 * b * b))], dynamic=True)
    add(f"space_to_depth_{b}", ["SpaceToDepth"],
        lambda x, b=b: _raw().SpaceToDepth(input=x, block_size=b),
        lambda r, b=b: [rand(r, (2, 2 * b, 3 * b, 2), "int32")], dynamic=True)

# -- InplaceUpdate / InplaceAdd / InplaceSub (TF writes into x; tfdeploy returns a copy) --------
for _name in ("Update", "Add", "Sub"):
    for _dt in ("float32", "int32", "float64"):
        add(f"inplace_{_name.lower()}_{_dt}", [f"Inplace{_name}"],
            lambda x, i, v, _name=_name: getattr(_raw(), f"Inplace{_name}")(x=x, i=i, v=v),
            lambda r, _dt=_dt: [rand(r, (5, 3), _dt), i32(4, 0, 2), rand(r, (3, 3), _dt)])
add("inplace_add_repeated_rows", ["InplaceAdd"],
    lambda x, i, v: _raw().InplaceAdd(x=x, i=i, v=v),
    lambda r: [rand(r, (4, 2)), i32(1, 1, 3), rand(r, (3, 2))])
add("inplace_update_3d", ["InplaceUpdate"],
    lambda x, i, v: _raw().InplaceUpdate(x=x, i=i, v=v),
    lambda r: [rand(r, (3, 2, 2)), i32(2), rand(r, (1, 2, 2))])
