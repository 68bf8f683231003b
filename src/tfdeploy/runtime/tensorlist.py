"""TensorList values (TF2 lists of tensors, the variant values of Keras RNNs and TensorArrays).

A list is a :class:`TensorList`: an immutable value to its users, as TF's value semantics
require, that is still updated in O(1) inside loops. The trick is Baker's "shallow binding"
persistent array: all versions of a list share one store (a Python list of element arrays);
the newest version (the *head*) reads the store directly. Updating the head writes the store in
place and turns the old head into a *diff* -- "like my successor, except these elements" --
so anyone still holding the old version keeps seeing its values (reading through the diff
chain). Updating an old version copies, as TF does when a list has more than one reference.
A loop that writes element t of its list at step t therefore costs O(1) per step, and a list
nobody else reads is never copied. (A diff keeps its successor alive, so a version held during
a whole loop would keep every element the loop overwrote: the While executor gives each list it
updates a store of its own on entry, one O(n) copy of references per loop, not per step.)

Why not a preallocated ndarray buffer: element shapes are often partly unknown until the first
write (a dynamic batch), elements may differ in shape (TensorListConcat, ragged writes), and a
buffer would copy every element written; a Python list of references costs O(1) per write and
one ``np.stack`` at the end, which TF pays as well.

Elements are stored as the arrays given (never copied, never written: kernels do not modify
their inputs); ``None`` marks an element not set yet, read as zeros of the element shape. The
kernels are in ``kernels/lists``.
"""

from __future__ import annotations

import numpy as np


class Store:
    __slots__ = ("items",)

    def __init__(self, items: list):
        self.items = items


class TensorList:
    """The value of a TF TensorList (a DT_VARIANT scalar): element dtype, shape and items."""

    __slots__ = ("dtype", "shape", "max_size", "_store", "_n", "_diff", "whole")

    def __init__(self, dtype: np.dtype, shape, store: Store, n: int, max_size: int = -1):
        self.dtype = dtype
        #: the element shape: a tuple with None for unknown dims, or None for unknown rank
        self.shape = shape
        self.max_size = max_size
        self._store = store
        self._n = n
        #: None for the head (newest) version of the store; else (successor, {index: old
        #: element} or None): this version reads like its successor except those elements
        self._diff = None
        #: the array whose slices along axis 0 are this version's elements, when it was made
        #: from one (``TensorListFromTensor``): a consumer of every element (an RNN's input
        #: projection) reads it instead of joining them again; else None
        self.whole = None

    @classmethod
    def of(cls, items: list, dtype, shape=None, max_size: int = -1,
           whole: np.ndarray | None = None) -> TensorList:
        lst = cls(np.dtype(dtype), shape, Store(items), len(items), max_size)
        lst.whole = whole
        return lst

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"<TensorList of {self._n} {self.dtype} elements, element shape {self.shape}>"

    # ------------------------------------------------------------------ reading
    def get(self, i: int):
        """Element ``i`` (None if unset); ``i`` must be in range."""
        v = self
        while v._diff is not None:
            nxt, changes = v._diff
            if changes is not None and i in changes:
                return changes[i]
            v = nxt
        return v._store.items[i]

    def items(self) -> list:
        """A fresh Python list of this version's elements."""
        if self._diff is None:
            return self._store.items[:self._n]
        chain = []
        v = self
        while v._diff is not None:
            chain.append(v._diff[1])
            v = v._diff[0]
        items = list(v._store.items)
        for changes in reversed(chain):
            if changes:
                for i, old in changes.items():
                    items[i] = old
        return items[:self._n]

    # ------------------------------------------------------------------ new versions
    def copy(self) -> TensorList:
        """An equal list with a store of its own (O(n) references, no element copies)."""
        new = self._with(self.items())
        new.whole = self.whole
        return new

    def _successor(self, n: int, changes: dict | None) -> TensorList:
        new = TensorList(self.dtype, self.shape, self._store, n, self.max_size)
        self._diff = (new, changes)
        return new

    def _with(self, items: list) -> TensorList:
        return TensorList(self.dtype, self.shape, Store(items), len(items), self.max_size)

    def set(self, i: int, value) -> TensorList:
        if self._diff is None:
            items = self._store.items
            old = items[i]
            items[i] = value
            return self._successor(self._n, {i: old})
        items = self.items()
        items[i] = value
        return self._with(items)

    def set_many(self, indices, values) -> TensorList:
        if self._diff is None:
            items = self._store.items
            changes = {}
            for i, v in zip(indices, values):
                if i not in changes:
                    changes[i] = items[i]
                items[i] = v
            return self._successor(self._n, changes)
        items = self.items()
        for i, v in zip(indices, values):
            items[i] = v
        return self._with(items)

    def resize(self, n: int) -> TensorList:
        """This list with ``n`` elements: truncated, or padded with unset elements."""
        if self._diff is not None:
            items = self.items()
            items[n:] = []
            items.extend([None] * (n - len(items)))
            return self._with(items)
        items = self._store.items
        changes = {}
        # stale elements past this version's end (left by a pop) must read as unset
        for i in range(self._n, min(n, len(items))):
            if items[i] is not None:
                changes[i] = items[i]
                items[i] = None
        if n > len(items):
            items.extend([None] * (n - len(items)))
        return self._successor(n, changes or None)

    def push(self, value) -> TensorList:
        if self._diff is None:
            items = self._store.items
            n = self._n
            if n == len(items):
                items.append(value)
                return self._successor(n + 1, None)
            old = items[n]
            items[n] = value
            return self._successor(n + 1, {n: old})
        items = self.items()
        items.append(value)
        return self._with(items)

    def pop(self) -> TensorList:
        if self._diff is None:
            return self._successor(self._n - 1, None)
        return self._with(self.items()[:-1])


# ---------------------------------------------------------------------------- helpers
