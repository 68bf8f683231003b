"""Implementation selection: GPU-only function variants replaced by their CPU twins, as TF's
Grappler ImplementationSelector does by device (a GraphDef optimised on a GPU machine calls the
GPU variant, e.g. a CudnnRNN branch)."""

from __future__ import annotations

from tfdeploy.ir.graph import CALL_OPS


def select_cpu_implementations(graph_def):
    """The GraphDef with calls of GPU-only function variants redirected to their CPU twins.

    tf_keras LSTM/GRU layers register two implementations of one API (function attributes
    ``api_implements`` and ``api_preferred_device``): the standard loop for CPU and
    ``gpu_lstm_with_fallback`` (a CudnnRNNV3 branch) for GPU, and Grappler picks one by device.
    A graph optimised on a GPU machine calls the GPU variant; this points such calls back at
    the CPU variant with the same ``api_implements`` (same signature). Returns ``graph_def``
    itself when nothing needs to change, else a modified copy.
    """

    def attr(f, key):
        v = f.attr.get(key)
        return v.s.decode("utf-8", "replace") if v is not None and v.s else None

    funcs = list(graph_def.library.function)
    cpu = {}
    for f in funcs:
        api, dev = attr(f, "api_implements"), attr(f, "api_preferred_device")
        if api and dev == "CPU":
            cpu[api] = f.signature.name
    swap = {}
    for f in funcs:
        api, dev = attr(f, "api_implements"), attr(f, "api_preferred_device")
        if api and dev and dev != "CPU" and api in cpu:
            swap[f.signature.name] = cpu[api]
    node_lists = [graph_def.node] + [f.node_def for f in funcs]
    if not any((nd.op in CALL_OPS and nd.attr["f"].func.name in swap) or nd.op in swap
               for nodes in node_lists for nd in nodes):
        return graph_def
    out = type(graph_def)()
    out.CopyFrom(graph_def)
    node_lists = [out.node] + [f.node_def for f in out.library.function]
    for nodes in node_lists:
        for nd in nodes:
            if nd.op in CALL_OPS and nd.attr["f"].func.name in swap:
                nd.attr["f"].func.name = swap[nd.attr["f"].func.name]
            elif nd.op in swap:
                nd.op = swap[nd.op]
    return out
