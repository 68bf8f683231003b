"""Built-in kernels, one subpackage per op family. Importing this package registers them all.

The list is explicit: every module registers its own kernels and their specializers, and none
depends on another having registered first, so the order below is only the reading order.
"""

from tfdeploy.kernels import (  # noqa: F401
    array,
    control,
    image,
    linalg,
    lists,
    lookup,
    math,
    nn,
    ragged,
    random,
    special,
    strings,
)
