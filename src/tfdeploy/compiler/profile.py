"""Profiling: time per step, gathered by a plan compiled with a Profile (``Model.profile``,
``tfdeploy profile``). Every kernel, those of loop bodies and branches included, is wrapped in
a timer; a control-flow step's time includes its bodies', so totals count it once. Each node's
time is its median over the runs: on a shared machine one descheduled run would otherwise
dominate the sums."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


class Profile:
    """Seconds and calls per (node, op) and run; ``by_op`` and ``slowest`` summarise them."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        #: (node name, op label) -> [[seconds, calls] of the current run, is control flow]
        self.nodes: dict[tuple[str, str], list] = {}
        #: per node, (seconds, calls) of each finished run
        self.history: dict[tuple[str, str], list[tuple[float, int]]] = {}
        self.runs = 0

    def wrap(self, name: str, label: str, kernel, control: bool = False) -> Callable:
        entry = self.nodes.setdefault((name, label), [[0.0, 0], control])
        clock = self.clock

        def timed(*args):
            t0 = clock()
            try:
                return kernel(*args)
            finally:
                cur = entry[0]
                cur[0] += clock() - t0
                cur[1] += 1
        timed.__name__ = getattr(kernel, "__name__", label)
        timed.__wrapped__ = kernel  # (a dump finds a loop's plans through it)
        return timed

    def end_run(self) -> None:
        """Close one run: every node's time in it goes to the history."""
        for key, (cur, _) in self.nodes.items():
            self.history.setdefault(key, []).append((cur[0], cur[1]))
            cur[0], cur[1] = 0.0, 0
        self.runs += 1

    def reset(self) -> None:
        for cur, _ in self.nodes.values():
            cur[0], cur[1] = 0.0, 0
        self.history.clear()
        self.runs = 0

    def _node_times(self) -> list[tuple[str, str, float, float, bool]]:
        """(node, op, median seconds per run, calls per run, control) of every node."""
        out = []
        for (name, label), (_, control) in self.nodes.items():
            h = self.history.get((name, label)) or [(0.0, 0)]
            out.append((name, label, statistics.median(t for t, _ in h),
                        statistics.median(c for _, c in h), control))
        return out

    def total(self) -> float:
        """Seconds in kernels per run (control-flow steps counted through their bodies)."""
        return sum(t for _, _, t, _, control in self._node_times() if not control)

    def by_op(self) -> list[tuple[str, float, float]]:
        """(op, seconds per run, calls per run), slowest first."""
        ops: dict[str, list] = {}
        for _, label, t, n, control in self._node_times():
            if control:
                continue
            a = ops.setdefault(label, [0.0, 0])
            a[0] += t
            a[1] += n
        return sorted(((op, t, n) for op, (t, n) in ops.items()), key=lambda r: -r[1])

    def slowest(self, n: int = 10) -> list[tuple[str, str, float, float]]:
        """(node, op, seconds per run, calls per run) of the ``n`` slowest nodes."""
        rows = [(name, label, t, c) for name, label, t, c, control in self._node_times()
                if not control]
        return sorted(rows, key=lambda r: -r[2])[:n]

    def report(self, n: int = 10) -> str:
        total = self.total()
        lines = [f"{total * 1e3:.3f} ms per run in kernels ({self.runs} runs, median per "
                 "node)", "", f"{'op':<40} {'ms/run':>9} {'share':>6} {'calls':>7}"]
        for op, t, calls in self.by_op():
            lines.append(f"{op[:40]:<40} {t * 1e3:9.3f} {t / total if total else 0:6.1%} "
                         f"{calls:7.0f}")
        lines += ["", f"slowest {n} nodes:", f"{'node':<48} {'op':<24} {'ms/run':>9}"]
        for name, op, t, _ in self.slowest(n):
            lines.append(f"{name[-48:]:<48} {op[:24]:<24} {t * 1e3:9.3f}")
        return "\n".join(lines)
