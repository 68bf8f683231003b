"""A layered (Sugiyama-style) drawing of a directed graph, top to bottom, in pure Python.

1. Cycles are broken by reversing the back edges of a depth-first search.
2. Layers by longest path from the sources; what the pinned sources (the graph's inputs) do
   not reach (constants and what reads them) moves down next to its first consumer.
3. Edges spanning several layers get a dummy vertex per layer, so they can bend around nodes.
4. Order within layers: barycenter sweeps, down and up, keeping the order with the fewest
   crossings (counted exactly, with a Fenwick tree).
5. x coordinates: each sweep moves every vertex towards the mean of its neighbours in the
   previous layer, as far as the order and spacing allow (the best such placement is an
   isotonic regression, solved exactly by pool-adjacent-violators); dummies weigh more, which
   keeps long edges straight.

Linear-ish in practice: a few thousand nodes take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_GAP = 24.0
DUMMY_GAP = 8.0
LAYER_GAP = 44.0
MARGIN = 16.0
SWEEPS = 8


@dataclass
class Layout:
    #: center of each node
    xy: list[tuple[float, float]]
    width: float
    height: float
    #: per edge (in the order given): the points to draw it through, source to target
    routes: list[list[tuple[float, float]]]


def _break_cycles(n: int, edges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The edges with each back edge of an iterative DFS reversed (self-loops dropped)."""
    succ: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        if a != b:
            succ[a].append(b)
    state = [0] * n  # 0 new, 1 on the stack, 2 done
    back: set[tuple[int, int]] = set()
    for root in range(n):
        if state[root]:
            continue
        stack = [(root, 0)]
        state[root] = 1
        while stack:
            v, i = stack[-1]
            if i < len(succ[v]):
                stack[-1] = (v, i + 1)
                w = succ[v][i]
                if state[w] == 1:
                    back.add((v, w))
                elif state[w] == 0:
                    state[w] = 1
                    stack.append((w, 0))
            else:
                state[v] = 2
                stack.pop()
    return [(b, a) if (a, b) in back else (a, b) for a, b in edges if a != b]


def _layers(n: int, dag: list[tuple[int, int]], top: set[int]) -> list[int]:
    preds: list[list[int]] = [[] for _ in range(n)]
    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for a, b in dag:
        preds[b].append(a)
        succ[a].append(b)
        indeg[b] += 1
    order = [v for v in range(n) if indeg[v] == 0]
    for v in order:  # Kahn's algorithm; `order` grows while it is walked
        for w in succ[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                order.append(w)
    layer = [0] * n
    for v in order:
        layer[v] = max((layer[u] + 1 for u in preds[v]), default=0)
    # what the inputs do not reach (constants, their reads and reshapes) sits as low as it
    # can, just above its first consumer, instead of at the top with long edges down
    reached = [v in top for v in range(n)]
    for v in order:
        reached[v] = reached[v] or any(reached[u] for u in preds[v])
    if any(reached):
        for v in reversed(order):
            if not reached[v] and succ[v]:
                layer[v] = max(0, min(layer[w] for w in succ[v]) - 1)
    return layer


class _Fenwick:
    def __init__(self, n: int):
        self.t = [0] * (n + 1)

    def add(self, i: int) -> None:
        i += 1
        while i < len(self.t):
            self.t[i] += 1
            i += i & -i

    def count_above(self, i: int, total: int) -> int:
        s, j = 0, i + 1
        while j > 0:
            s += self.t[j]
            j -= j & -j
        return total - s


def _crossings(layers: list[list[int]], pos: list[int], down: list[list[int]]) -> int:
    total = 0
    for layer in layers[:-1]:
        pairs = sorted((pos[v], pos[w]) for v in layer for w in down[v])
        if not pairs:
            continue
        tree = _Fenwick(max(p for _, p in pairs) + 1)
        for k, (_, p) in enumerate(pairs):
            total += tree.count_above(p, k)
            tree.add(p)
    return total


def _order(layers: list[list[int]], up: list[list[int]], down: list[list[int]],
           n: int) -> list[list[int]]:
    pos = [0] * n

    def index() -> None:
        for layer in layers:
            for i, v in enumerate(layer):
                pos[v] = i

    index()
    best = [list(x) for x in layers]
    best_c = _crossings(layers, pos, down)
    for sweep in range(SWEEPS):
        rng = range(1, len(layers)) if sweep % 2 == 0 else range(len(layers) - 2, -1, -1)
        nbrs = up if sweep % 2 == 0 else down
        for li in rng:
            layer = layers[li]

            def bary(v, nbrs=nbrs):
                ns = nbrs[v]
                return sum(pos[u] for u in ns) / len(ns) if ns else pos[v]

            layer.sort(key=bary)
            for i, v in enumerate(layer):
                pos[v] = i
        c = _crossings(layers, pos, down)
        if c < best_c:
            best, best_c = [list(x) for x in layers], c
        if best_c == 0:
            break
    return best


def _isotonic(d: list[float], w: list[float]) -> list[float]:
    """The non-decreasing sequence closest to ``d`` (weights ``w``, least squares): PAV."""
    blocks: list[list[float]] = []  # [value, weight, count]
    for di, wi in zip(d, w):
        blocks.append([di, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks[-1]
            blocks[-1] = [(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2]
    out: list[float] = []
    for v, _, c in blocks:
        out.extend([v] * int(c))
    return out


def _place_x(layers, up, down, widths, is_dummy) -> list[float]:
    n = len(widths)
    x = [0.0] * n

    def gap(a: int, b: int) -> float:
        g = DUMMY_GAP if is_dummy[a] or is_dummy[b] else NODE_GAP
        return widths[a] / 2 + g + widths[b] / 2

    offsets = []
    for layer in layers:
        off, acc = [], 0.0
        for i, v in enumerate(layer):
            if i:
                acc += gap(layer[i - 1], v)
            off.append(acc)
        offsets.append(off)
        for v, o in zip(layer, off):
            x[v] = o
    for sweep in range(SWEEPS):
        order = range(len(layers)) if sweep % 2 == 0 else range(len(layers) - 1, -1, -1)
        nbrs = up if sweep % 2 == 0 else down
        for li in order:
            layer, off = layers[li], offsets[li]
            want = [sum(x[u] for u in nbrs[v]) / len(nbrs[v]) if nbrs[v] else x[v]
                    for v in layer]
            weights = [4.0 if is_dummy[v] else 1.0 for v in layer]
            fitted = _isotonic([d - o for d, o in zip(want, off)], weights)
            for v, f, o in zip(layer, fitted, off):
                x[v] = f + o
    left = min((x[v] - widths[v] / 2 for v in range(n)), default=0.0)
    return [xi - left + MARGIN for xi in x]


def layout(sizes: list[tuple[float, float]], edges: list[tuple[int, int]],
           top: set[int] | frozenset[int] = frozenset()) -> Layout:
    """Positions for nodes of the given (width, height) and routes for ``edges``; sources in
    ``top`` (the graph's inputs) stay in the first layer."""
    n = len(sizes)
    if n == 0:
        return Layout([], 2 * MARGIN, 2 * MARGIN, [[] for _ in edges])
    dag = _break_cycles(n, edges)
    layer = _layers(n, dag, set(top))
    widths = [w for w, _ in sizes]
    is_dummy = [False] * n
    up: list[list[int]] = [[] for _ in range(n)]
    down: list[list[int]] = [[] for _ in range(n)]
    chains: dict[tuple[int, int], list[int]] = {}
    for a, b in dict.fromkeys(dag):  # each (a, b) once, in order
        chain = [a]
        for li in range(layer[a] + 1, layer[b]):
            widths.append(0.0)
            is_dummy.append(True)
            up.append([])
            down.append([])
            layer.append(li)
            chain.append(len(widths) - 1)
        chain.append(b)
        for u, v in zip(chain, chain[1:]):
            down[u].append(v)
            up[v].append(u)
        chains[(a, b)] = chain
    layers: list[list[int]] = [[] for _ in range(max(layer) + 1)]
    for v in range(len(widths)):  # initial order: the given node order, dummies after
        layers[layer[v]].append(v)
    layers = _order(layers, up, down, len(widths))
    x = _place_x(layers, up, down, widths, is_dummy)
    row_h = [max((sizes[v][1] for v in lay if v < n), default=0.0) for lay in layers]
    ys, acc = [], MARGIN
    for h in row_h:
        ys.append(acc + h / 2)
        acc += h + LAYER_GAP
    y = [ys[layer[v]] for v in range(len(widths))]
    xy = [(x[v], y[v]) for v in range(n)]
    routes = []
    for a, b in edges:
        if a == b:
            routes.append([])
            continue
        chain = chains.get((a, b))
        rev = chain is None
        chain = chains[(b, a)][::-1] if rev else chain
        pts = [(x[v], y[v]) for v in chain]
        (x0, y0), (x1, y1) = pts[0], pts[-1]
        h0, h1 = sizes[a][1] / 2, sizes[b][1] / 2
        pts[0] = (x0, y0 + h0 if y1 >= y0 else y0 - h0)
        pts[-1] = (x1, y1 - h1 if y1 >= y0 else y1 + h1)
        routes.append(pts)
    width = max((x[v] + widths[v] / 2 for v in range(len(widths))), default=0.0) + MARGIN
    return Layout(xy, width, acc - LAYER_GAP + MARGIN, routes)
