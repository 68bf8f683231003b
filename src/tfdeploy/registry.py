"""Op registration: kernels by TensorFlow op type, with one or more implementations each.

A kernel is a plain function named like the TF op. Inputs come positionally in TF's order,
attributes as keyword-only arguments with TF's defaults; it returns one array, or a tuple for
multi-output ops. Attributes a kernel does not declare are not passed to it (unless it takes
``**attrs``), so a kernel only names what it uses::

    @op("Relu6")
    def Relu6(x):
        return np.clip(x, 0, 6).astype(x.dtype, copy=False)

Every op has a numpy implementation (the default); others such as scipy sit beside it and are
chosen with :func:`setup` or per op with ``Operation.use_impl``.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfdeploy.errors import TFDeployError

IMPL_NUMPY = "numpy"
IMPL_SCIPY = "scipy"
IMPLS = (IMPL_NUMPY, IMPL_SCIPY)


@dataclass
class OpDef:
    """Everything known about one op type."""

    type: str
    impls: dict[str, Callable] = field(default_factory=dict)
    #: classic tfdeploy: attribute names passed positionally after the inputs
    positional_attrs: tuple[str, ...] | None = None
    #: never folded at load time (random ops, ops with side effects)
    stateful: bool = False
    #: this op's own choice of implementation, over the global one
    preferred: str | None = None
    #: the kernel is a factory: called once at bind time as ``fn(_ctx=context, **attrs)``, it
    #: returns the callable run for each evaluation (control flow compiles nested plans so)
    needs_context: bool = False
    #: per implementation: ``spec(consts, **attrs)`` where ``consts`` lists each input's value
    #: if it is a load-time constant, else None; returns a faster callable taking only the
    #: other inputs, or None (see :func:`specializer`)
    specializers: dict[str, Callable] = field(default_factory=dict)
    #: implementations that are tfdeploy's own (``tfdeploy.kernels``), not a user's: compiler
    #: passes rewrite only ops running one of these (see :func:`runs_builtin`)
    builtin: set[str] = field(default_factory=set)
    #: an op the compiler makes (a fused step), never found in a graph or file
    internal: bool = False


_REGISTRY: dict[str, OpDef] = {}
#: built-in specializers registered before their kernel, by (type, impl) (see :func:`specializer`)
_waiting: dict[tuple[str, str], Callable] = {}
_state = {"impl": IMPL_NUMPY}


def _check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise TFDeployError(f"unknown implementation {impl!r}; expected one of {IMPLS}")


def op(*types: str, impl: str = IMPL_NUMPY, stateful: bool = False,
       needs_context: bool = False, replace: bool = False, builtin: bool = False,
       internal: bool = False) -> Callable[[Callable], Callable]:
    """Register the decorated function as the ``impl`` kernel of each op type in ``types``.

    Registering the same (type, impl) twice raises, unless ``replace=True``. ``builtin`` marks
    tfdeploy's own kernels; ``internal`` an op only the compiler makes (a fused step).
    """
    if not types:
        raise TypeError("op() needs at least one TensorFlow op type")
    _check_impl(impl)

    def decorate(fn: Callable) -> Callable:
        for t in types:
            register(t, fn, impl=impl, stateful=stateful, needs_context=needs_context,
                     replace=replace, builtin=builtin, internal=internal)
        return fn

    return decorate


def register(type: str, fn: Callable, impl: str = IMPL_NUMPY, stateful: bool = False,
             needs_context: bool = False, replace: bool = False,
             positional_attrs: tuple[str, ...] | None = None, builtin: bool = False,
             internal: bool = False) -> OpDef:
    """Register ``fn`` as the ``impl`` kernel of op ``type``; the function form of :func:`op`."""
    _check_impl(impl)
    _load_builtin_ops()  # built-ins first, so a user's kernel replaces them and not vice versa
    d = _REGISTRY.get(type)
    if d is None:
        d = _REGISTRY[type] = OpDef(type, internal=internal)
    elif impl in d.impls and not replace:
        raise TFDeployError(f"op {type!r} already has a {impl} implementation "
                            f"({d.impls[impl].__module__}.{d.impls[impl].__qualname__})")
    d.impls[impl] = fn
    if builtin:
        d.builtin.add(impl)
        if (type, impl) in _waiting:
            d.specializers[impl] = _waiting.pop((type, impl))
    else:
        d.builtin.discard(impl)
        d.specializers.pop(impl, None)  # a built-in's specializer does not fit a user's kernel
    d.stateful = d.stateful or stateful
    d.needs_context = d.needs_context or needs_context
    if positional_attrs is not None:
        d.positional_attrs = tuple(positional_attrs)
    return d


def specializer(*types: str, impl: str = IMPL_NUMPY,
                builtin: bool = False) -> Callable[[Callable], Callable]:
    """Register a specializer for the ``impl`` kernel of ``types``: when some of a node's inputs
    are constants at load time (StridedSlice's begin/end/strides, a Reshape's shape...), the plan
    calls ``spec(consts, **attrs)`` once and, if it returns a callable, runs that on the
    remaining inputs instead of the generic kernel.

    A user's specializer needs its kernel registered first (a misspelt type fails here). A
    built-in one (``builtin``: tfdeploy's kernel modules, which load in any order) whose kernel
    is not registered yet waits for it; one still waiting when the built-in kernels have all
    loaded is an error, so a misspelt type fails there."""
    _check_impl(impl)

    def decorate(fn: Callable) -> Callable:
        for t in types:
            d = _REGISTRY.get(t)
            if d is not None and impl in d.impls:
                d.specializers[impl] = fn
            elif builtin:
                _waiting[(t, impl)] = fn
            else:
                raise TFDeployError(f"specializer for {t!r}: register its {impl} kernel first")
        return fn

    return decorate


def specialize(d: OpDef, attrs: dict[str, Any], consts: list) -> Callable | None:
    """A specialized kernel of ``d`` for these constant inputs, or None."""
    spec = d.specializers.get(chosen_impl(d))
    if spec is None:
        return None
    names, var_kw, _ = _accepted_attrs(spec)
    return spec(consts, **{k: v for k, v in attrs.items() if var_kw or k in names})


def unregister(type: str) -> None:
    """Remove an op type entirely (used by tests and by users replacing a custom op)."""
    _load_builtin_ops()
    _REGISTRY.pop(type, None)


def get_opdef(type: str) -> OpDef | None:
    _load_builtin_ops()
    return _REGISTRY.get(type)


def registered_ops() -> list[str]:
    """All registered op types (those a graph may hold, not the compiler's own), sorted."""
    _load_builtin_ops()
    return sorted(t for t, d in _REGISTRY.items() if not d.internal)


def is_registered(type: str) -> bool:
    """Whether a graph may hold op ``type``: a kernel is registered (the compiler's own fused
    ops do not count: a file naming one is refused)."""
    d = get_opdef(type)
    return d is not None and not d.internal


def chosen_impl(d: OpDef) -> str:
    """The name of the implementation :func:`choose_impl` runs for ``d``."""
    for impl in (d.preferred, _state["impl"], IMPL_NUMPY):
        if impl is not None and impl in d.impls:
            return impl
    return next(iter(d.impls))


def runs_builtin(type: str, impls: tuple[str, ...] = (IMPL_NUMPY,)) -> bool:
    """Whether op ``type`` runs, as things are set now, one of tfdeploy's own implementations
    among ``impls``: what a compiler pass checks before replacing the op's steps by a kernel of
    its own, so a user's kernel or another implementation is never silently bypassed."""
    d = get_opdef(type)
    if d is None:
        return False
    impl = chosen_impl(d)
    return impl in impls and impl in d.builtin


def check_available(impl: str) -> None:
    """Raise a clear error when tfdeploy's own ``impl`` kernels cannot run here: the scipy
    ones need scipy, an optional package (without it, every call of such a kernel would fail
    with an ImportError from deep inside)."""
    if impl == IMPL_SCIPY and importlib.util.find_spec("scipy") is None:
        raise TFDeployError("the scipy implementation needs scipy, which is not installed: "
                            "pip install scipy (or tfdeploy[scipy])")


def set_default_impl(impl: str) -> None:
    """Use ``impl`` for every op that has it; the others keep their numpy kernel."""
    _check_impl(impl)
    check_available(impl)
    _state["impl"] = impl


def default_impl() -> str:
    return _state["impl"]


def choose_impl(d: OpDef) -> Callable:
    """The kernel to run for ``d`` now: the op's own choice, else the global one, else numpy."""
    return d.impls[chosen_impl(d)]


_SIMPLE = (bool, int, float, str, type(None))


@functools.cache
def _accepted_attrs(fn: Callable) -> tuple[frozenset[str], bool, dict]:
    """Names of the keyword attributes ``fn`` declares, whether it takes ``**kwargs``, and the
    declared defaults of simple type."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins: pass everything
        return frozenset(), True, {}
    names, var_kw, defaults = set(), False, {}
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.add(p.name)
            if p.default is not p.empty and isinstance(p.default, _SIMPLE):
                defaults[p.name] = p.default
    return frozenset(names), var_kw, defaults


def _is_default(value, default) -> bool:
    return type(value) is type(default) and value == default


def bind(d: OpDef, attrs: dict[str, Any], context: Any = None) -> Callable:
    """A callable ``f(*inputs)`` running the chosen kernel of ``d`` with ``attrs`` bound once."""
    fn = choose_impl(d)
    if d.positional_attrs is not None:
        try:
            extra = tuple(attrs[a] for a in d.positional_attrs)
        except KeyError as e:
            raise TFDeployError(f"op {d.type!r} expects attribute {e.args[0]!r}, which the "
                                "node does not have") from None
        if not extra:
            return fn
        return lambda *inputs: fn(*inputs, *extra)
    names, var_kw, defaults = _accepted_attrs(fn)
    # attributes equal to the kernel's own defaults are not bound: most nodes then need no
    # functools.partial at all, which saves a call layer on the hot path
    kw = {k: v for k, v in attrs.items() if (var_kw or k in names)
          and not (k in defaults and _is_default(v, defaults[k]))}
    if d.needs_context:
        return fn(_ctx=context, **kw)
    return functools.partial(fn, **kw) if kw else fn


#: what loads the built-in kernels, set by the package (``tfdeploy/__init__.py``): the registry
#: sits below the kernels and imports none of them; they load on first use, not at import
_builtin_loader: list[Callable[[], None]] = []
_builtins_loaded = [False]


def set_builtin_loader(load: Callable[[], None]) -> None:
    _builtin_loader[:] = [load]


def _load_builtin_ops() -> None:
    if not _builtins_loaded[0] and _builtin_loader:
        _builtins_loaded[0] = True
        _builtin_loader[0]()
        check_waiting()


def check_waiting() -> None:
    """Raise if a built-in specializer still waits for its kernel (a misspelt op type)."""
    if _waiting:
        raise TFDeployError("built-in specializers without a kernel: " + ", ".join(
            f"{t!r} ({impl})" for t, impl in sorted(_waiting)))
