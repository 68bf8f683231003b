"""Profiling: time per step, gathered by a plan compiled with a Profile (``Model.profile``,
``tfdeploy profile``). Every kernel, those of loop bodies and branches included, is wrapped in
a timer; a control-flow step's time includes its bodies', so totals count it once."""

from __future__ import annotations

import time
from collections.abc import Callable


class Profile:
    """Seconds and calls per (node, op); ``by_op`` and ``slowest`` summarise them."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        #: (node name, op label) -> [seconds, calls, is control flow]
        self.nodes: dict[tuple[str, str], list] = {}
        self.runs = 0

    def wrap(self, name: str, label: str, kernel, control: bool = False) -> Callable:
        entry = self.nodes.setdefault((name, label), [0.0, 0, control])
        clock = self.clock

        def timed(*args):
            t0 = clock()
            try:
                return kernel(*args)
            finally:
                entry[0] += clock() - t0
                entry[1] += 1
        timed.__name__ = getattr(kernel, "__name__", label)
        return timed

    def reset(self) -> None:
        for e in self.nodes.values():
            e[0], e[1] = 0.0, 0
        self.runs = 0

    def total(self) -> float:
        """Seconds in kernels per run (control-flow steps counted through their bodies)."""
        return sum(e[0] for e in self.nodes.values() if not e[2]) / max(self.runs, 1)

    def by_op(self) -> list[tuple[str, float, float]]:
        """(op, seconds per run, calls per run), slowest first."""
        ops: dict[str, list] = {}
        for (_, label), (t, n, control) in self.nodes.items():
            if control:
                continue
            a = ops.setdefault(label, [0.0, 0])
            a[0] += t
            a[1] += n
        runs = max(self.runs, 1)
        return sorted(((op, t / runs, n / runs) for op, (t, n) in ops.items()),
                      key=lambda r: -r[1])

    def slowest(self, n: int = 10) -> list[tuple[str, str, float, float]]:
        """(node, op, seconds per run, calls per run) of the ``n`` slowest nodes."""
        runs = max(self.runs, 1)
        rows = [(name, label, t / runs, c / runs)
                for (name, label), (t, c, control) in self.nodes.items() if not control]
        return sorted(rows, key=lambda r: -r[2])[:n]

    def report(self, n: int = 10) -> str:
        total = self.total()
        lines = [f"{total * 1e3:.3f} ms per run in kernels ({self.runs} runs)", "",
                 f"{'op':<40} {'ms/run':>9} {'share':>6} {'calls':>7}"]
        for op, t, calls in self.by_op():
            lines.append(f"{op[:40]:<40} {t * 1e3:9.3f} {t / total if total else 0:6.1%} "
                         f"{calls:7.0f}")
        lines += ["", f"slowest {n} nodes:", f"{'node':<48} {'op':<24} {'ms/run':>9}"]
        for name, op, t, _ in self.slowest(n):
            lines.append(f"{name[-48:]:<48} {op[:24]:<24} {t * 1e3:9.3f}")
        return "\n".join(lines)
