"""The conformance harness: a TF function and inputs in; shape, then dtype, then values compared.

Where TensorFlow's result depends on the machine (its oneDNN build rewrites some ops, and without
oneDNN its CPU kernels refuse NCHW and dilated forms of others), the harness asks TF at run time
and compares with what TF computes on every machine: a case's ``oracle`` (the same values in a
form TF always runs), or TF's reference kernels (oneDNN off, in a child process if this one's TF
uses oneDNN) for a case that declares a ``onednn`` deviation.
"""

from __future__ import annotations

import functools

import numpy as np

import tfdeploy as td


def _tf():
    import tensorflow as tf

    return tf


@functools.cache
def tf_uses_onednn() -> bool:
    """Whether this process's TensorFlow runs its oneDNN (MKL) rewrites: TF's default on CPUs
    with AVX-512-class features, and what TF_ENABLE_ONEDNN_OPTS forces either way."""
    _tf()
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # pragma: no cover - depends on the TF build
        return False


def compare(got, want, rtol: float = 1e-6, atol: float = 1e-6, what: str = "output") -> None:
    """Assert ``got`` equals TF's ``want``: shape first, then dtype, then values (NaN == NaN)."""
    want = np.asarray(want)
    assert isinstance(got, np.ndarray), f"{what}: expected an ndarray, got {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != TF's {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != TF's {want.dtype}"
    if want.dtype.kind in "biuSUO" or want.dtype == object:
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        g, w = got, want
        if g.dtype.kind == "f" and g.dtype.itemsize < 4:  # float16 / bfloat16
            g, w = g.astype(np.float32), w.astype(np.float32)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def tf_function(fn, inputs, dynamic: bool = False):
    """``fn`` as a tf.function with a signature matching ``inputs`` (all dims None if dynamic)."""
    tf = _tf()
    specs = [tf.TensorSpec([None] * np.ndim(x) if dynamic else np.shape(x),
                           tf.as_dtype(np.asarray(x).dtype), name=f"x{i}")
             for i, x in enumerate(inputs)]
    return tf.function(fn, input_signature=specs, autograph=False)


def run_tf(f, inputs) -> list[np.ndarray]:
    out = f(*inputs)
    outs = out if isinstance(out, (list, tuple)) else [out]
    # .numpy(), not np.asarray: the latter fails on 0-d bfloat16 tensors
    res = [np.asarray(o.numpy() if hasattr(o, "numpy") else o) for o in outs]
    # TF gives string scalars as bytes: tfdeploy's strings are object arrays of bytes
    return [r.astype(object) if r.dtype.kind in "SU" else r for r in res]


def check_tf(fn, inputs, rtol: float = 1e-6, atol: float = 1e-6, ops=(), dynamic: bool = False,
             roundtrip: bool = True, tmp_path=None, out_dtypes=(), wants=None) -> td.Model:
    """Trace ``fn``, run it in TF and in tfdeploy, compare every output; returns the model.

    ``wants``: TF's outputs computed otherwise (see :func:`expected`), as (label, outputs)
    pairs, each compared; by default TF runs ``fn`` itself."""
    f = tf_function(fn, inputs, dynamic=dynamic)
    if wants is None:
        wants = [("TF", run_tf(f, inputs))]
    if out_dtypes:
        for label, want in wants:
            tf_dtypes = [w.dtype.name for w in want]
            assert tf_dtypes == list(out_dtypes), \
                f"case declares {out_dtypes}, {label} gives {tf_dtypes}"
    model = td.convert(f, check_data=False)  # (the harness compares with TF itself)
    present = model.op_types()
    missing = [o for o in ops if o not in present]
    assert not missing, f"op types {missing} not in the converted graph (has {sorted(present)})"
    if roundtrip:
        import io

        buf = io.BytesIO()
        model.save(buf)
        model = td.load(buf.getvalue())
    got = model(*inputs)
    got = list(got) if isinstance(got, tuple) else [got]
    for label, want in wants:
        assert len(got) == len(want), f"{len(got)} outputs, {label} has {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            compare(g, w, rtol=rtol, atol=atol, what=f"output {i} (against {label})")
    return model


def check_rejects(fn, inputs, match: str, dynamic: bool = False) -> None:
    """TF refuses to run ``fn`` on ``inputs`` (an error when it runs, not when it traces),
    and tfdeploy's model of ``fn`` refuses too: a ``TFDeployError`` matching ``match``."""
    import pytest

    from tfdeploy.errors import TFDeployError

    f = tf_function(fn, inputs, dynamic=dynamic)
    with pytest.raises(_tf().errors.OpError):
        run_tf(f, inputs)
    model = td.convert(f, check_data=False)
    with pytest.raises(TFDeployError, match=match):
        model(*inputs)


def expected(case, inputs, dynamic: bool = False) -> list[tuple[str, list[np.ndarray]]]:
    """What TF computes for ``case`` on every machine, as (label, outputs) pairs.

    - A case declaring a ``onednn`` deviation compares with TF's reference kernels: this
      process's TF if it runs without oneDNN, else a child process with oneDNN off.
    - A case with an ``oracle`` compares with it (the same values in a form TF's CPU kernels
      always run) and also with TF running the case itself, where TF can (with oneDNN).
    """
    if case.onednn and tf_uses_onednn():
        import tf_reference

        return [("TF without oneDNN", tf_reference.outputs(case.id))]
    f = tf_function(case.fn, inputs, dynamic=dynamic)
    if case.oracle is None:
        return [("TF", run_tf(f, inputs))]
    tf = _tf()
    wants = [("TF on the oracle's form", run_tf(tf_function(case.oracle, inputs), inputs))]
    try:
        wants.append(("TF", run_tf(f, inputs)))
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        pass  # TF's CPU kernels refuse this form without oneDNN: the oracle stands for it
    return wants


def check_case(case, dynamic: bool = False) -> None:
    inputs = case.make_inputs()
    if case.rejects is not None:
        check_rejects(case.fn, inputs, case.rejects, dynamic=dynamic)
        return
    check_tf(case.fn, inputs, rtol=case.rtol, atol=case.atol, ops=case.ops, dynamic=dynamic,
             out_dtypes=case.out_dtypes, wants=expected(case, inputs, dynamic))
