"""The one place the command line imports the IR and the plan's op sets from: the core is being
restructured (``graph.py`` -> ``ir/graph.py``, ``plan.py`` -> ``compiler/``); re-point these
imports and every command follows."""

from tfdeploy.ir.graph import ALIAS_OPS, SOURCE_OPS, FuncAttr, Graph, Node, TensorSpec, parse_ref

__all__ = ["ALIAS_OPS", "SOURCE_OPS", "FuncAttr", "Graph", "Node", "TensorSpec", "parse_ref"]
