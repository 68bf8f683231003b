"""The classic extension API: custom ops as ``td.Operation`` subclasses or factories.

::

    class InvertedSoftmax(td.Operation):
        def func(a):
            e = np.exp(-a)
            return np.divide(e, np.sum(e, axis=-1, keepdims=True)),

    @InvertedSoftmax.add_impl(td.IMPL_SCIPY)
    def InvertedSoftmax(a): ...

The class name is the TF op type (or set ``types = ("A", "B")``). ``func`` takes the op's inputs
positionally; set ``attrs = ("axis", ...)`` to receive those node attributes positionally after
the inputs (the original tfdeploy's convention), or declare keyword-only arguments. A subclass
replaces any earlier kernel of its op type, built-in ones included.
"""

from __future__ import annotations

from collections.abc import Callable

from tfdeploy import registry
from tfdeploy.registry import IMPL_NUMPY


class _OperationMeta(type):
    def __new__(mcs, name, bases, ns):
        func = ns.get("func")
        if func is not None and not isinstance(func, staticmethod):
            ns["func"] = staticmethod(func)
        cls = super().__new__(mcs, name, bases, ns)
        if bases and ns.get("func") is not None:
            cls.types = tuple(ns.get("types") or (name,))
            impl = ns.get("impl", IMPL_NUMPY)
            attrs = ns.get("attrs")
            for t in cls.types:
                if impl == IMPL_NUMPY:
                    registry.unregister(t)  # a user's class replaces the op wholesale
                registry.register(t, cls.func, impl=impl, replace=True,
                                  positional_attrs=tuple(attrs) if attrs is not None else None,
                                  stateful=bool(ns.get("stateful", False)))
        return cls


class Operation(metaclass=_OperationMeta):
    """Base class of custom ops; see the module docstring."""

    types: tuple[str, ...] = ()
    impl: str = IMPL_NUMPY
    attrs: tuple[str, ...] | None = None
    stateful: bool = False
    func = None

    @classmethod
    def factory(cls, func: Callable | None = None, *, impl: str = IMPL_NUMPY,
                attrs=None, types=None, stateful: bool = False):
        """Make an Operation subclass from a function (usable with or without arguments)."""
        def make(f: Callable):
            ns = {"func": f, "impl": impl, "attrs": attrs, "stateful": stateful,
                  "types": tuple(types) if types else (f.__name__,), "__doc__": f.__doc__,
                  "__module__": f.__module__}
            return _OperationMeta(f.__name__, (cls,), ns)

        return make(func) if func is not None else make

    @classmethod
    def add_impl(cls, impl: str) -> Callable[[Callable], type]:
        """Decorator: register the function as another implementation of this op."""
        def decorate(f: Callable):
            for t in cls._op_types():
                registry.register(t, f, impl=impl, replace=True,
                                  positional_attrs=cls.attrs if cls.attrs is not None else None)
            return cls

        return decorate

    @classmethod
    def use_impl(cls, impl: str) -> None:
        """Run this op with ``impl`` whatever the global setting (see :func:`tfdeploy.setup`)."""
        for t in cls._op_types():
            d = registry.get_opdef(t)
            if d is None or impl not in d.impls:
                raise registry.TFDeployError(f"op {t!r} has no {impl} implementation")
            if impl in d.builtin:
                registry.check_available(impl)
            d.preferred = impl

    @classmethod
    def _op_types(cls) -> tuple[str, ...]:
        return cls.types or (cls.__name__,)


def get_op(op_type: str) -> type[Operation]:
    """An Operation class standing for a registered op type (built-in or custom), so that
    ``td.get_op("Lgamma").use_impl(td.IMPL_SCIPY)`` or ``.add_impl(...)`` work on it."""
    d = registry.get_opdef(op_type)
    if d is None:
        raise registry.TFDeployError(f"no op {op_type!r} is registered")
    return type(op_type, (Operation,), {"types": (op_type,), "__module__": __name__})


