"""Matrix products: MatMul, BatchMatMul (V1/V2/V3) and Einsum."""

from __future__ import annotations

import functools
import math

import numpy as np

from tfdeploy.kernels.common import low_precision, np_dtype, op, specializer
from tfdeploy.kernels.math.few_rows import rows_by
from tfdeploy.runtime.limits import check_array

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b; float16/bfloat16 are computed in float32 (numpy has no fast kernel for them)."""
    if low_precision(a.dtype):
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
    return np.matmul(a, b)


def _adjoint(x: np.ndarray) -> np.ndarray:
    x = np.swapaxes(x, -1, -2)
    return np.conj(x) if x.dtype.kind == "c" else x


@op("MatMul")
def MatMul(a, b, *, transpose_a=False, transpose_b=False):
    """MatMul: the product of two matrices, optionally transposed (not conjugated)."""
    dt = a.dtype
    if (dt is _F32 or dt is _F64) and b.dtype is dt and not (transpose_a or transpose_b) and \
            a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[0]:
        return np.matmul(a, b)  # the common case, checked in as few steps as possible
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"MatMul expects two matrices, got shapes {a.shape} and {b.shape}")
    if transpose_a:
        a = a.T
    if transpose_b:
        b = b.T
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"MatMul: inner dimensions differ: {a.shape} @ {b.shape}")
    return _matmul(a, b)


def _batch_matmul(x, y, adj_x, adj_y):
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"BatchMatMul expects tensors of rank >= 2, got shapes {x.shape} and "
                         f"{y.shape}")
    if adj_x:
        x = _adjoint(x)
    if adj_y:
        y = _adjoint(y)
    if x.shape[-1] != y.shape[-2]:
        raise ValueError(f"BatchMatMul: inner dimensions differ: {x.shape} @ {y.shape}")
    if not x.size or not y.size:  # (numpy loops over a batch of 2**31 empty matrices: 3.5 s)
        return _empty_product(x, y)
    if y.ndim == 2 and x.ndim > 2 and x.flags.c_contiguous:
        # a sequence by a matrix (a Dense layer on [batch, tokens, features]): one product of
        # all its rows. numpy multiplies each batch entry apart, packing the matrix again for
        # each: 8 x 32 x 768 by 768 x 3072, one thread, 19.6 -> 12.4 ms
        r = _matmul(x.reshape(-1, x.shape[-1]), y)
        return r.reshape(x.shape[:-1] + r.shape[-1:])
    return _matmul(x, y)


def _empty_product(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x @ y for an empty operand: zeros (an inner dim of 0), or an empty result; checked
    against the tensor limit first ([m, 0] @ [0, n] is m * n zeros)."""
    try:
        batch = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except ValueError:
        raise ValueError(f"BatchMatMul: the batch dimensions of {list(x.shape)} and "
                         f"{list(y.shape)} do not broadcast") from None
    shape, dt = batch + (x.shape[-2], y.shape[-1]), np.result_type(x, y)
    check_array(shape, dt, "the matrix product")
    return np.zeros(shape, dt)


@op("BatchMatMul", "BatchMatMulV2")
def BatchMatMulV2(x, y, *, adj_x=False, adj_y=False):
    """BatchMatMulV2: matrix products over the last two axes, batch axes broadcast.

    adj_x/adj_y take the adjoint (conjugate transpose). BatchMatMul (V1) requires equal batch
    shapes in TF; here it broadcasts like V2.
    """
    return _batch_matmul(x, y, adj_x, adj_y)


@op("BatchMatMulV3")
def BatchMatMulV3(x, y, *, Tout=None, adj_x=False, adj_y=False):
    """BatchMatMulV3: BatchMatMulV2 with inputs of types Ta and Tb and an output of type Tout."""
    out = np_dtype(Tout) if Tout is not None else x.dtype
    if x.dtype != out:
        x = x.astype(out)
    if y.dtype != out:
        y = y.astype(out)
    return _batch_matmul(x, y, adj_x, adj_y)


@functools.lru_cache(maxsize=1024)
def _einsum_as_matmul(equation: str):
    """How a two-operand ``equation`` is one batched matmul: (perm of a, perm of b, perm of
    the result, #batch, #left, #contracted, #right) with a transposed to (batch, left,
    contracted) and b to (batch, contracted, right); None for what it cannot express (an
    ellipsis, a repeated letter, a letter summed in one operand only)."""
    eq = equation.replace(" ", "")
    if "." in eq or "->" not in eq:
        return None
    lhs, c = eq.split("->")
    ops = lhs.split(",")
    if len(ops) != 2:
        return None
    a, b = ops
    if any(len(set(t)) != len(t) for t in (a, b, c)) or set(c) - set(a) - set(b) or \
            (set(a) ^ set(b)) - set(c):
        return None
    batch = [x for x in c if x in a and x in b]
    left = [x for x in c if x in a and x not in b]
    right = [x for x in c if x in b and x not in a]
    contracted = [x for x in a if x in b and x not in c]
    order = batch + left + right
    return ([a.index(x) for x in batch + left + contracted],
            [b.index(x) for x in batch + contracted + right],
            [order.index(x) for x in c], len(batch), len(left), len(contracted), len(right))


def _einsum_matmul(plan, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """A two-operand einsum as one batched matmul over reshaped transposes (the BLAS path
    np.einsum's optimizer would look for on every call), or None if the dims disagree."""
    pa, pb, pc, nb, nl, nc, nr = plan
    a, b = x.transpose(pa), y.transpose(pb)
    bs, ls, cs = a.shape[:nb], a.shape[nb:nb + nl], a.shape[nb + nl:]
    if b.shape[:nb] != bs or b.shape[nb:nb + nc] != cs:
        return None
    rs = b.shape[nb + nc:]
    m, k, n = math.prod(ls), math.prod(cs), math.prod(rs)  # (np.prod: its Python wrapper)
    r = np.matmul(a.reshape(bs + (m, k)), b.reshape(bs + (k, n)))
    return r.reshape(bs + ls + rs).transpose(pc)


@op("Einsum")
def Einsum(*inputs, equation):
    """Einsum: the tensor contraction described by ``equation`` (ellipsis broadcasts)."""
    dt = inputs[0].dtype
    if low_precision(dt):
        inputs = tuple(x.astype(np.float32) for x in inputs)
    plan = _einsum_as_matmul(equation) if len(inputs) == 2 else None
    r = _einsum_matmul(plan, *inputs) if plan is not None and \
        inputs[0].dtype == inputs[1].dtype and inputs[0].dtype.kind in "fc" else None
    if r is None:
        r = np.asarray(np.einsum(equation, *inputs, optimize=len(inputs) > 1))
    if any(np.may_share_memory(r, x) for x in inputs):  # transposes and diagonals are views
        r = r.copy()
    return r.astype(dt, copy=False)


# MatMul with constant weights (every Dense layer): the checks on the weights done once
@specializer("MatMul")
def _matmul_const_b(consts, *, transpose_a=False, transpose_b=False):
    a, b = consts
    if b is None or a is not None or b.ndim != 2 or low_precision(b.dtype):
        return None
    w = b.T if transpose_b else b
    k = w.shape[0]
    matmul = np.matmul
    # a large weight: 2-8 rows in the form measured fastest, the fused Dense chains' choice
    # (``few_rows``)
    few = rows_by(w)

    def MatMul(a):
        if transpose_a:
            a = a.T
        if a.ndim != 2 or a.shape[1] != k:
            raise ValueError(f"MatMul: cannot multiply shape {a.shape} by weights of shape "
                             f"{w.shape}")
        return matmul(a, w) if few is None else few(a)

    return MatMul
