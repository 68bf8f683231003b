"""Lookup tables: the hash tables of StringLookup, IntegerLookup, TextVectorization and
``tf.lookup``, frozen into data at conversion.

TF keeps a table's contents in a resource outside the graph. The converter
(``convert/tables.py``) reads each table with TF and puts a ``TFDHashTable`` node where the
resource was, holding the keys and values as attributes; TF's own lookup ops (LookupTableFindV2,
LookupTableSizeV2, LookupTableExportV2) then read the :class:`LookupTable` that node produces.
The table is built (indexed) once, when the plan is compiled, and is immutable: ops that modify
a table (LookupTableInsertV2, LookupTableImportV2, LookupTableRemoveV2) are not supported.
"""

from __future__ import annotations

from itertools import repeat

import numpy as np

from tfdeploy.kernels.common import np_dtype, op


class LookupTable:
    """An immutable key -> value map over arrays: ``keys`` (n,), ``values`` (n, *value_shape).

    Numeric keys are found by binary search in a sorted copy; string keys (object arrays of
    bytes) through a dict, the only exact and fast way numpy offers for variable-length bytes.
    """

    __slots__ = ("keys", "values", "elementwise_default", "_sorted", "_order", "_index")

    def __init__(self, keys: np.ndarray, values: np.ndarray, elementwise_default: bool = False):
        keys = np.asarray(keys)
        values = np.asarray(values)
        if keys.ndim != 1:
            raise ValueError(f"table keys must be a vector, got shape {keys.shape}")
        if values.ndim < 1 or values.shape[0] != keys.shape[0]:
            raise ValueError(f"table values of shape {values.shape} do not match "
                             f"{keys.shape[0]} keys")
        self.keys = keys
        self.values = values
        #: a default_value with one entry per key is read element-wise (MutableHashTable), or
        #: only its first entry is used (HashTable)
        self.elementwise_default = elementwise_default
        self._index = self._sorted = self._order = None
        if keys.dtype == object:
            self._index = {k: i for i, k in enumerate(keys.tolist())}
            if len(self._index) != len(keys):
                raise ValueError("table keys are not unique")
        else:
            self._order = np.argsort(keys, kind="stable")
            self._sorted = keys[self._order]
            if keys.size > 1 and not (self._sorted[1:] != self._sorted[:-1]).all():
                raise ValueError("table keys are not unique")

    def __len__(self) -> int:
        return self.keys.shape[0]

    def __repr__(self) -> str:
        return (f"<LookupTable of {len(self)} {self.keys.dtype} -> {self.values.dtype} "
                f"entries>")

    def positions(self, query: np.ndarray) -> np.ndarray:
        """The row of each query key in ``values`` (flat, intp), -1 where absent."""
        flat = query.reshape(-1)
        if self._index is not None:
            items = flat.tolist()
            if items and type(items[0]) is not bytes:  # e.g. str from a unicode array
                items = [k.encode() if isinstance(k, str) else k for k in items]
            return np.fromiter(map(self._index.get, items, repeat(-1)), np.intp, flat.size)
        if flat.dtype != self._sorted.dtype:
            flat = flat.astype(self._sorted.dtype)
        n = self._sorted.shape[0]
        if n == 0:
            return np.full(flat.shape, -1, np.intp)
        at = np.minimum(np.searchsorted(self._sorted, flat), n - 1)
        return np.where(self._sorted[at] == flat, self._order[at], -1)


def _table(t) -> LookupTable:
    if not isinstance(t, LookupTable):
        raise TypeError(f"expected a lookup table (the output of a TFDHashTable node), got "
                        f"{type(t).__name__}: a table resource that was not frozen at conversion")
    return t


@op("TFDHashTable", needs_context=True)
def TFDHashTable(*, keys, values, key_dtype=None, value_dtype=None, elementwise_default=False,
                 _ctx=None):
    """tfdeploy's frozen hash table (stands for HashTableV2 / MutableHashTableV2 and their
    contents): keys (n,) and values (n, *value_shape) as attributes; outputs the table."""
    keys = np.asarray(keys)
    values = np.asarray(values)
    if key_dtype is not None and keys.dtype != np_dtype(key_dtype):
        keys = keys.astype(np_dtype(key_dtype))
    if value_dtype is not None and values.dtype != np_dtype(value_dtype):
        values = values.astype(np_dtype(value_dtype))
    table = LookupTable(keys, values, bool(elementwise_default))

    def run():
        return table
    return run


@op("LookupTableFindV2")
def LookupTableFindV2(table_handle, keys, default_value):
    """LookupTableFindV2: the value of each key, ``default_value`` where a key is absent.

    ``default_value`` is one value (of the table's value shape) or, for tables TF reads so
    (MutableHashTable), one per key; otherwise its first value is used, as TF's HashTable does.
    """
    t = _table(table_handle)
    keys = np.asarray(keys)
    default = np.asarray(default_value)
    vshape = t.values.shape[1:]
    vsize = int(np.prod(vshape, dtype=np.int64))
    if default.dtype != t.values.dtype:
        raise TypeError(f"default_value is {default.dtype}, the table's values are "
                        f"{t.values.dtype}")
    if keys.dtype != t.keys.dtype and not (keys.dtype.kind == t.keys.dtype.kind == "O"):
        raise TypeError(f"keys are {keys.dtype}, the table's keys are {t.keys.dtype}")
    pos = t.positions(keys)
    found = pos >= 0
    if t.elementwise_default and default.size == pos.size * vsize and default.size > vsize:
        fill = default.reshape(pos.shape + vshape)
    elif default.size >= vsize and default.size > 0:
        fill = np.broadcast_to(default.reshape(-1)[:vsize].reshape(vshape), pos.shape + vshape)
    else:
        raise ValueError(f"default_value of shape {list(default.shape)} does not fit values of "
                         f"shape {list(vshape)}")
    got = t.values[np.where(found, pos, 0)] if len(t) else np.empty(
        pos.shape + vshape, t.values.dtype)
    mask = found.reshape(found.shape + (1,) * len(vshape))
    out = np.where(mask, got, fill)
    return np.asarray(out, dtype=t.values.dtype).reshape(keys.shape + vshape)


@op("LookupTableSizeV2")
def LookupTableSizeV2(table_handle):
    """LookupTableSizeV2: the number of entries in the table (int64 scalar)."""
    return np.asarray(len(_table(table_handle)), np.int64)


@op("LookupTableExportV2")
def LookupTableExportV2(table_handle, *, Tkeys=None, Tvalues=None):
    """LookupTableExportV2: all keys and values, in the order TF exported them at conversion."""
    t = _table(table_handle)
    return t.keys.copy(), t.values.copy()  # (the caller's: never the table's own memory)
