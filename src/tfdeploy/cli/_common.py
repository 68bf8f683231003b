"""What the commands share: declaring a command, reading model files, formatting numbers."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import TFDeployError


class UsageError(TFDeployError):
    """The command line asks for something impossible (a bad option value, a missing file...)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (raised, so main applies its policy)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


#: options every command accepts after its name too (SUPPRESS: not set unless given there)
COMMON = _Parser(add_help=False)
COMMON.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                    help="show the full traceback of an error")
COMMON.add_argument("--plugin", action="append", metavar="MODULE", default=argparse.SUPPRESS,
                    help="import this Python module or .py file first (it registers custom ops)")


def add_command(subparsers, name: str, summary: str, description: str,
                examples: Sequence[str]) -> argparse.ArgumentParser:
    """Add command ``name`` with its one-line ``summary`` (in ``tfdeploy --help``), a longer
    ``description`` and example command lines (in ``tfdeploy NAME --help``)."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    return subparsers.add_parser(name, help=summary, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 parents=[COMMON])


def called_functions(node) -> list[str]:
    """Names of the functions a node calls (While/If bodies, call targets), in attribute
    order."""
    from ._ir import FuncAttr

    out = []
    for v in node.attrs.values():
        for f in v if isinstance(v, list) else [v]:
            if isinstance(f, FuncAttr):
                out.append(f.name)
    return out


def comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def positive_ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def read_model_file(path: str):
    """(graphs by key, metadata) of a model file, without compiling anything: works even when
    the file needs custom ops this process has not registered."""
    from .. import fileformat

    return fileformat.load(path)


def load_model(path: str):
    """A runnable :class:`tfdeploy.Model` (every op type it needs must be registered)."""
    from ..model import Model

    return Model(path)


# ---------------------------------------------------------------------------- formatting

def fmt_shape(shape) -> str:
    """``(None, 28, 28, 1)``; ``?`` for an unknown rank."""
    if shape is None:
        return "?"
    dims = ["None" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def fmt_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    if isinstance(v, bytes):
        s = repr(v)
        return s if len(s) <= 24 else s[:21] + "...'"
    return str(v)


def table(rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> str:
    """Rows of strings as aligned columns (the first row is the header); columns in ``right``
    are right-aligned."""
    right = set(right)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
                 enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def progress(total: int, desc: str, enabled: bool = True):
    """A tqdm progress bar on stderr when tqdm is installed and stderr is a terminal (or
    TFDEPLOY_PROGRESS=1), else an object with the same few methods that shows nothing."""
    forced = os.environ.get("TFDEPLOY_PROGRESS") == "1"
    if enabled and (forced or sys.stderr.isatty()):
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=desc, file=sys.stderr, leave=False,
                        dynamic_ncols=True)
    return _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass
