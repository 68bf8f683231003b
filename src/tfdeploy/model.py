"""The classic tfdeploy objects: Model and Tensor."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfdeploy import dtypes, fileformat, registry
from tfdeploy.compiler.passes.select import check_registered
from tfdeploy.compiler.pipeline import compile_plan
from tfdeploy.errors import FeedError, FileFormatError, GraphError, TFDeployError
from tfdeploy.ir.graph import Graph, TensorSpec, canonical_ref, node_dtype, node_shape, parse_ref
from tfdeploy.ir.verify import CALLERS, check_calls, check_signatures
from tfdeploy.runtime import heap, threads
from tfdeploy.runtime.dispatch import ShapeDispatch
from tfdeploy.runtime.feeds import FeedCheck
from tfdeploy.runtime.limits import LIMITS

DEFAULT_KEY = "default"


class Tensor:
    """A handle on one tensor of a model: evaluate it with ``eval(feed_dict)``."""

    # Identity semantics (no __eq__/__hash__): Model.get returns one object per tensor, and
    # hashing stays in C on the eval hot path.
    __slots__ = ("model", "key", "ref", "spec", "__weakref__")

    def __init__(self, model: Model, key: str, ref: str, spec: TensorSpec | None = None):
        self.model = model
        self.key = key
        self.ref = canonical_ref(ref)
        self.spec = spec

    @property
    def name(self) -> str:
        """The tensor's name in the graph, ``node:index``."""
        return self.ref

    @property
    def op(self):
        """The graph node producing this tensor."""
        return self.model.graphs[self.key].node(parse_ref(self.ref)[0])

    @property
    def dtype(self) -> str | None:
        return self.spec.dtype if self.spec else node_dtype(self.op, parse_ref(self.ref)[1])

    @property
    def shape(self):
        return self.spec.shape if self.spec else node_shape(self.op)

    def eval(self, feed_dict: Mapping | None = None) -> np.ndarray:
        return self.model.eval(self, feed_dict)

    def __repr__(self) -> str:
        return f"<tfdeploy.Tensor {self.ref!r} of graph {self.key!r}>"



class Model:
    """A set of graphs loaded from a tfdeploy file or converted from TensorFlow.

    ``Model(path)`` loads a file; ``Model()`` starts empty for :meth:`add`. ``mmap``: see
    :func:`load`.
    """

    def __init__(self, path: str | os.PathLike | bytes | None = None, *,
                 mmap: bool | None = None):
        self.graphs: dict[str, Graph] = {}
        self.metadata: dict[str, Any] = {}
        self._plans: dict = {}
        # hot-path caches: (fetches, feed keys) of eval() and the argument layout of __call__
        self._evals: dict = {}
        self._calls: dict = {}
        self._tensors: dict[tuple[str, str], Tensor] = {}
        self._lock = threading.Lock()
        if path is not None:
            graphs, self.metadata = fileformat.load(path, mmap=mmap)
            for k, g in graphs.items():
                self._add_graph(g, k)

    # ------------------------------------------------------------------ building
    def add(self, obj, sess=None, key: str | None = None, *, check_data: bool = True,
            **convert_kwargs) -> Model:
        """Add a graph: ``add(tensor, sess)`` for TF1 graphs (the classic way), or any source
        :func:`tfdeploy.convert` accepts (Keras model, tf.function, SavedModel path...).

        ``check_data``: also store a small input and TensorFlow's outputs on it, which
        ``td.load(path, verify=True)`` and ``tfdeploy check`` compare against."""
        from tfdeploy.convert import convert_graph

        graph, metadata = convert_graph(obj, sess=sess, check_data=check_data, **convert_kwargs)
        key = self._add_graph(graph, key)
        # per-graph metadata (check data, recorded tensor shapes) is kept by graph key
        for section, value in metadata.items():
            self.metadata.setdefault(section, {})[key] = value
        return self

    def _add_graph(self, graph: Graph, key: str | None) -> str:
        if key is None:
            key = DEFAULT_KEY if not self.graphs else f"graph_{len(self.graphs)}"
            while key in self.graphs:
                key += "_"
        if key in self.graphs:
            raise TFDeployError(f"the model already has a graph with key {key!r}")
        check_registered([n for g in [graph, *graph.functions.values()] for n in g.nodes])
        check_calls(graph, LIMITS.max_function_depth)
        check_signatures(graph)
        self.graphs[key] = graph
        with self._lock:
            self._plans.clear()
            self._evals.clear()
            self._calls.clear()
            self._tensors.clear()
        return key

    def save(self, path) -> None:
        """Write the model to one data-only file (any extension; ``model.pkl`` works too)."""
        if not self.graphs:
            raise TFDeployError("cannot save an empty model: add a graph first")
        fileformat.save(self.graphs, path, self.metadata)

    # ------------------------------------------------------------------ lookup
    @property
    def default_graph(self) -> Graph:
        if not self.graphs:
            raise TFDeployError("the model is empty")
        return next(iter(self.graphs.values()))

    @property
    def inputs(self) -> list[TensorSpec]:
        """The signature's inputs (of the first graph): name, dtype, shape (None = unknown)."""
        return list(self.default_graph.inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self.default_graph.outputs)

    def op_types(self) -> set[str]:
        out: set[str] = set()
        for g in self.graphs.values():
            out |= g.op_types()
        return out

    def get(self, *names: str, key: str | None = None):
        """Tensors by name (``"input"``, ``"output:0"``, a signature name...), searched across
        every graph (or only ``key``). One name gives a Tensor, several a tuple."""
        if not names:
            raise TypeError("get() needs at least one name")
        out = tuple(self._find(n, key) for n in names)
        return out[0] if len(out) == 1 else out

    def _find(self, name: str, key: str | None) -> Tensor:
        if isinstance(name, Tensor):
            return name
        if not isinstance(name, str):
            raise TypeError(f"tensor names are strings, got {type(name).__name__}")
        keys = [key] if key is not None else list(self.graphs)
        for k in keys:
            if k not in self.graphs:
                raise TFDeployError(f"the model has no graph with key {k!r} "
                                    f"(has {list(self.graphs)})")
            g = self.graphs[k]
            for s in g.inputs + g.outputs:
                if s.name == name or (":" not in name and s.name == f"{name}:0"):
                    return self._tensor(k, canonical_ref(s.ref), s)
            node_name, _ = parse_ref(name)
            if node_name in g.by_name():
                ref = canonical_ref(name)
                spec = next((s for s in g.inputs + g.outputs if canonical_ref(s.ref) == ref), None)
                return self._tensor(k, ref, spec)
        avail = [s.name for g in self.graphs.values() for s in g.inputs + g.outputs]
        raise TFDeployError(f"no tensor named {name!r} in the model (signature names: "
                            f"{avail}; any node name also works)")

    def _tensor(self, key: str, ref: str, spec: TensorSpec | None) -> Tensor:
        t = self._tensors.get((key, ref))
        if t is None:
            t = self._tensors.setdefault((key, ref), Tensor(self, key, ref, spec))
        return t

    # ------------------------------------------------------------------ evaluation
    def eval(self, fetches, feed_dict: Mapping | None = None):
        """Evaluate one tensor (returns an array) or a list of tensors (returns a list) in one
        pass. ``feed_dict`` keys are tensors or their names."""
        single = isinstance(fetches, (Tensor, str))
        fk = fetches if single else tuple(fetches)
        keys = tuple(feed_dict) if feed_dict else ()
        try:
            entry = self._evals.get((fk, keys))
        except TypeError:  # unhashable keys: no caching
            entry = None
        if entry is None:
            entry = self._prepare_eval([fk] if single else list(fk), keys)
            try:
                if len(self._evals) > 256:
                    self._evals.clear()
                self._evals[(fk, keys)] = entry
            except TypeError:
                pass
        # the plan's generated code validates and casts the feeds itself
        out = entry.run(tuple(feed_dict.values()) if feed_dict else ())
        if single:  # a 0-d result is a numpy scalar, as TF1's session.run gives it
            r = out[0]
            return r[()] if r.__class__ is np.ndarray and not r.ndim else r
        return [r[()] if r.__class__ is np.ndarray and not r.ndim else r for r in out]

    def _prepare_eval(self, fetch_list: list, feed_keys: tuple):
        if not fetch_list:
            return lambda feeds: ()
        tensors = [self._find(f, None) if isinstance(f, str) else f for f in fetch_list]
        for t in tensors:
            if not isinstance(t, Tensor) or t.model is not self:
                raise TFDeployError(f"{t!r} is not a tensor of this model")
        key = tensors[0].key
        if any(t.key != key for t in tensors):
            raise TFDeployError("all fetched tensors must come from the same graph")
        feed_refs = []
        for k in feed_keys:
            t = self._find(k, key) if isinstance(k, str) else k
            if not isinstance(t, Tensor) or t.model is not self:
                raise FeedError(f"feed key {k!r} is not a tensor of this model")
            if t.key != key:
                raise FeedError(f"feed {t.ref!r} belongs to graph {t.key!r}, the fetches to "
                                f"{key!r}")
            feed_refs.append(t.ref)
        return self._plan(key, tuple(t.ref for t in tensors), tuple(feed_refs))

    def _plan(self, key: str, fetches: tuple, feeds: tuple):
        ck = (key, fetches, feeds)
        entry = self._plans.get(ck)
        if entry is None:
            with self._lock:
                entry = self._plans.get(ck)
                if entry is None:
                    entry = self._compile(key, fetches, feeds)
                    self._plans[ck] = entry
        return entry

    def _compile(self, key, fetches, feeds):
        """The run of the plan computing ``fetches`` from ``feeds``: shape-dispatched (see
        ``runtime/dispatch.py``)."""
        def generic():
            return self._compile_plan(key, fetches, feeds).run

        def tracer():  # (unfused: every value the specialized plan has gets its shape)
            record: dict = {}
            plan = self._compile_plan(key, fetches, feeds, record=record, optimize=False)
            return plan.run, record

        def specialize(shapes, record, miss):
            return self._compile_plan(key, fetches, feeds, trace=record,
                                      feed_shapes=shapes, on_miss=miss).run

        return ShapeDispatch(generic, tracer, specialize, self._feed_checks(key, feeds),
                             rerun=_repeatable(self.graphs[key]))

    def _feed_checks(self, key, feeds) -> list:
        """Per fed tensor: the check casting and validating what is fed to it."""
        g = self.graphs[key]
        if len(set(feeds)) != len(feeds):
            raise FeedError("the same tensor is fed twice")
        return [self._feed_check(key, g, r) for r in feeds]

    def _compile_plan(self, key, fetches, feeds, **options):
        threads.ensure_blas()  # (both cheap after the first time)
        heap.ensure()
        try:
            return compile_plan(self.graphs[key], list(fetches), list(feeds),
                                feed_checks=self._feed_checks(key, feeds), **options)
        except TFDeployError:
            raise
        except Exception as e:  # noqa: BLE001  (RecursionError, MemoryError...: a bad graph)
            raise GraphError(f"cannot compile graph {key!r} for {list(fetches)}: "
                             f"{type(e).__name__}: {e}") from e

    def _feed_check(self, key: str, g: Graph, ref: str) -> FeedCheck:
        """The check of a value fed for ``ref``: a placeholder's dtype and shape; for any other
        tensor (the classic API may feed one), its constant's or TF's recorded dtype and shape,
        as TF1 checks and casts them."""
        name, i = parse_ref(ref)
        node = g.node(name)
        if node.op in ("Placeholder", "PlaceholderWithDefault"):
            return FeedCheck(node.name, node.attrs.get("dtype"), node.attrs.get("shape"))
        dtype = shape = None
        value = node.attrs.get("value")
        if node.op == "Const" and isinstance(value, np.ndarray):
            dtype, shape = dtypes.from_numpy(value.dtype), list(value.shape)
        else:
            rec = self.metadata.get("tensors", {})
            rec = rec.get(key, {}) if isinstance(rec, dict) else {}
            rec = rec.get("nodes", {}).get(name) if isinstance(rec, dict) else None
            if isinstance(rec, list) and i < len(rec) and isinstance(rec[i], list) and \
                    len(rec[i]) == 2:
                dtype = rec[i][0] if isinstance(rec[i][0], str) else None
                shape = rec[i][1] if isinstance(rec[i][1], list) else None
        return FeedCheck(ref, dtype, shape)

    def plan(self, *inputs, after: str | None = None, optimize: bool = True, **options):
        """The compiled plan of the signature (``print(model.plan())`` shows it one step a
        line), or as it stands after the named pass (``after="fuse_conv"``); see
        ``tfdeploy.compiler.pipeline``. With ``inputs``, the plan specialized for their
        shapes (the one a call with them runs)."""
        key, fetches, feeds = self._signature_refs(len(self.inputs), ())
        if inputs:
            record: dict = {}
            self._compile_plan(key, fetches, feeds, record=record, optimize=False).run(inputs)
            options.update(trace=record, feed_shapes=tuple(np.shape(x) for x in inputs))
        return self._compile_plan(key, fetches, feeds, after=after, optimize=optimize,
                                  **options)

    def profile(self, *inputs, repeat: int = 5, clock=None):
        """Time every kernel of the signature's plan (loop bodies included) over ``repeat``
        runs on ``inputs``: a :class:`tfdeploy.compiler.profile.Profile` (``.report()``)."""
        from tfdeploy.compiler.profile import Profile

        prof = Profile() if clock is None else Profile(clock)
        plan = self.plan(*inputs, profile=prof)
        plan.run(inputs)  # warm up: first-call caches are not what a server sees
        prof.reset()
        for _ in range(repeat):
            plan.run(inputs)
            prof.end_run()
        return prof

    def __call__(self, *args, **kwargs):
        """Run the signature: inputs positionally or by name; one output gives an array,
        several a tuple."""
        ck = (len(args), tuple(kwargs)) if kwargs else len(args)
        entry = self._calls.get(ck)
        if entry is None:
            entry = self._prepare_call(len(args), tuple(kwargs))
            self._calls[ck] = entry
        dispatch, single = entry
        out = dispatch.run(args + tuple(kwargs.values()) if kwargs else args)
        return out[0] if single else out

    def _prepare_call(self, n_args: int, names: tuple):
        key, fetches, feeds = self._signature_refs(n_args, names)
        return self._plan(key, fetches, feeds), len(fetches) == 1

    def _signature_refs(self, n_args: int, names: tuple) -> tuple[str, tuple, tuple]:
        """(graph key, fetched refs, fed refs) of a call with ``n_args`` positional inputs
        and the named ones."""
        if not self.graphs:
            raise TFDeployError("the model is empty")
        key = next(iter(self.graphs))
        g = self.graphs[key]
        specs = g.inputs
        if n_args > len(specs):
            raise FeedError(f"the model takes {len(specs)} input(s) "
                            f"({[s.name for s in specs]}), got {n_args}")
        refs = [s.ref for s in specs[:n_args]]
        by_name = {s.name: s for s in specs}
        for n in names:
            s = by_name.get(n) or by_name.get(f"{n}:0")
            if s is None:
                raise FeedError(f"the model has no input named {n!r} (inputs: {list(by_name)})")
            if s.ref in refs:
                raise FeedError(f"input {n!r} given twice")
            refs.append(s.ref)
        missing = [s.name for s in specs if s.ref not in refs
                   and g.node(parse_ref(s.ref)[0]).op == "Placeholder"]
        if missing:
            raise FeedError(f"missing input(s) {missing}; the model takes "
                            f"{[s.name for s in specs]}")
        fetches = tuple(canonical_ref(s.ref) for s in g.outputs)
        if not fetches:
            raise TFDeployError("the model's signature has no outputs")
        return key, fetches, tuple(canonical_ref(r) for r in refs)

    def __reduce__(self):
        raise TypeError("a tfdeploy.Model is not picklable: send its file (a path, or the "
                        "bytes model.save writes to a BytesIO) and td.load it where it runs "
                        "(tfdeploy.dask does that for you)")

    def __repr__(self) -> str:
        parts = [f"{k!r}: {len(g.nodes)} nodes" for k, g in self.graphs.items()]
        return f"<tfdeploy.Model {{{', '.join(parts)}}}>"


def _repeatable(g: Graph) -> bool:
    """Whether evaluating ``g`` twice on the same feeds changes nothing but the time: no
    stateful sampler (each call draws the next numbers, as TF's) and no kernel of the user's,
    whose side effects tfdeploy cannot know (``ShapeDispatch``'s ``rerun``). Ops the registry
    does not hold (Placeholder, Const) are the plan's own; control flow and calls, which TF
    marks stateful for what their functions may do, count by those functions (walked too)."""
    for graph in (g, *g.functions.values()):
        for n in graph.nodes:
            d = registry.get_opdef(n.op)
            if d is not None and (d.stateful and n.op not in CALLERS or
                                  not registry.runs_builtin(n.op, tuple(d.impls))):
                return False
    return True


def load(path, verify: bool = False, *, mmap: bool | None = None) -> Model:
    """Load a model file written by :meth:`Model.save`: a path, ``bytes`` (or any buffer,
    copied) or a binary file object.

    ``mmap``: memory-map the file instead of reading it into memory. The default maps files
    of 64 MiB or more (``fileformat.MMAP_MIN_BYTES``): loading them costs no copy, but the file
    must then not be changed in place while the model is in use (replace it with
    ``os.replace`` or ``mv``; copying over it or truncating it changes the weights or kills
    the process with SIGBUS). ``mmap=False`` reads any file into memory, immune to that.

    ``verify=True`` also runs every graph on the check input stored in the file and compares
    with TensorFlow's stored outputs; raises :class:`VerificationError` when an output differs
    beyond its tolerance or the file holds no check data."""
    if path is None:
        raise FileFormatError("td.load(None): pass a path, bytes or a binary file object")
    model = Model(path, mmap=mmap)
    if verify:
        from . import checkdata

        label = path if isinstance(path, (str, os.PathLike)) else "the model"
        checkdata.raise_on_failure(checkdata.verify(model), str(label))
    return model

