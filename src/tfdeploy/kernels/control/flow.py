"""Functional control flow: While, If, Case, For and function calls.

These ops run function graphs, so their kernels are *factories* (``needs_context=True``): the
compiler calls each once at load with the function attributes and its context, which compiles
every body once into a plan (``compiler/loops.py`` for While: invariants hoisted, counted
loops) and returns the executor run at each evaluation (``runtime/control.py``).
"""

from __future__ import annotations

from tfdeploy.ir.graph import FuncAttr
from tfdeploy.kernels.common import op, specializer


@op("While", needs_context=True, stateful=True)
@op("StatelessWhile", needs_context=True)
def While(*, _ctx, cond: FuncAttr, body: FuncAttr):
    """While / StatelessWhile: run ``body`` on the loop variables while ``cond`` holds.

    parallel_iterations and shape invariants do not matter to a sequential evaluator and are
    ignored (TF has checked the shapes when tracing).
    """
    return _ctx.loop(cond, body)


@specializer("While", "StatelessWhile")
def _while_constants(consts, *, cond: FuncAttr, body: FuncAttr, _ctx=None):
    """While with loop invariants that are load-time constants (an RNN's weights and biases):
    the cond and body are compiled with them as constants, so what depends on them alone is
    folded and the kernels reading them specialize and fuse (a MatMul by constant weights, a
    BiasAdd...). Without the context, or when no invariant is constant, the generic kernel
    runs."""
    if _ctx is None or all(c is None for c in consts):
        return None
    return _ctx.loop(cond, body, consts)


@op("If", needs_context=True, stateful=True)
@op("StatelessIf", needs_context=True)
def If(*, _ctx, then_branch: FuncAttr, else_branch: FuncAttr, Tout=None):
    """If / StatelessIf: ``then_branch(*input)`` if ``cond`` is true, else ``else_branch``.

    ``cond`` follows TF's ToBool: a scalar's value, or non-emptiness for other shapes. The
    branch's results must have the dtypes ``Tout`` declares.
    """
    return _ctx.branch(then_branch, else_branch, Tout)


@op("Case", needs_context=True, stateful=True)
@op("StatelessCase", needs_context=True)
def Case(*, _ctx, branches: list, Tout=None):
    """Case / StatelessCase: ``branches[branch_index](*input)``; an index out of range runs
    the last branch, as TF does. The branch's results must have the dtypes ``Tout``
    declares."""
    return _ctx.switch(branches, Tout)


@op("StatefulPartitionedCall", needs_context=True, stateful=True)
@op("PartitionedCall", needs_context=True)
def PartitionedCall(*, _ctx, f: FuncAttr, Tout=None):
    """PartitionedCall / StatefulPartitionedCall: the function ``f`` applied to the inputs,
    its results of the dtypes ``Tout`` declares.

    The converter inlines these where it can; this kernel runs the ones left.
    """
    return _ctx.call(f, Tout)


@op("For", needs_context=True, stateful=True)
def For(*, _ctx, body: FuncAttr):
    """For: ``state = body(i, *state)`` for i in range(start, limit, delta)."""
    return _ctx.for_loop(body)
