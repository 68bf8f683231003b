"""The IR: graphs of nodes carrying TensorFlow raw op types, and the one way to walk them."""

from tfdeploy.ir.graph import (  # noqa: F401
    FuncAttr,
    Graph,
    Node,
    TensorSpec,
    canonical_ref,
    format_ref,
    parse_ref,
)
