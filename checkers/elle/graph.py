"""Transaction dependency graphs with typed edges, SCCs, and typed cycle search.

What: ``DependencyGraph`` holds transactions as dense ints ``0..n-1`` and, per
transaction, a dict from successor to a bit mask of relationships (``WW``,
``WR``, ``RW``, ``PROCESS``, ``REALTIME``). No per-edge objects: one dict entry
per ordered pair, whatever its number of relationships, keeps a 100,000
transaction history to a few million ints.

``strongly_connected_components`` is an iterative Tarjan (no recursion limit)
over the edges whose mask intersects a chosen one, optionally restricted to a
node subset. ``find_cycle`` searches one SCC for the shortest cycle matching a
``CycleSpec``: which relationship the first edge must have, which the other
edges may have, and a small state machine over edge types (count of rw edges,
adjacency of rw edges, use of a process/realtime edge). It is a breadth-first
search over (transaction, state) pairs, started from every transaction that is
the target of a possible first edge, so the cycle found through a given start
is a shortest one. A search gets a deadline; past it, ``SearchTimeout`` is
raised so the caller reports ``cycle-search-timeout`` instead of hanging.

The anomaly a cycle shows follows Elle's classification (``classify``): one rw
edge is G-single; several rw edges, two adjacent, G2-item; several, none
adjacent, G-nonadjacent; otherwise G1c if any wr edge, else G0; with a
``-realtime`` or ``-process`` suffix when such an edge is used.

Invariants: no self edges (a transaction never depends on itself; the checkers
report such cases as ``future-read``/``internal`` instead). Every cycle
returned is simple (no transaction twice) and each of its edges is taken as
its preferred relationship (``preferred_rel``: ww, then wr, rw, process,
realtime), the one Elle explains it by, so ``classify`` of a cycle found for
a spec names that spec.

Thread-safety: a graph is mutated only while it is built, by one thread;
searches only read it.

Sources: Adya's thesis (direct serialization graphs, G0/G1c/G2 and G-single
as cycles with given edge types); Kingsbury & Alvaro, "Elle: Inferring
Isolation Anomalies from Experimental Observations", VLDB 2020, section 4
(cycle search restricted to SCCs, typed BFS); Tarjan, "Depth-first search and
linear graph algorithms", SIAM J. Comput. 1972.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

WW = 1
WR = 2
RW = 4
PROCESS = 8
REALTIME = 16
DATA = WW | WR | RW
ALL = DATA | PROCESS | REALTIME

#: Relationship bits in the order an explainer prefers them: a pair related
#: by both ww and rw is explained as ww, as Elle does.
REL_ORDER: tuple[int, ...] = (WW, WR, RW, PROCESS, REALTIME)
REL_NAMES: dict[int, str] = {
    WW: "ww",
    WR: "wr",
    RW: "rw",
    PROCESS: "process",
    REALTIME: "realtime",
}


def preferred_rel(rels: int) -> int:
    """The one relationship an edge is explained and traversed as.

    Elle explains an edge by the first explainer that can (ww, then wr, rw,
    process, realtime) and classifies cycles by those explanations, so a pair
    both ww- and rw-related is a ww edge. Searching with the same rule keeps
    every cycle found classified as the anomaly searched for. The bits are
    numbered in that order, so it is the lowest set bit.
    """
    return rels & -rels


class SearchTimeout(Exception):
    """A cycle search passed its deadline."""


class DependencyGraph:
    """A directed graph over transactions ``0..n-1`` with typed edges."""

    __slots__ = ("out",)

    def __init__(self, node_count: int) -> None:
        if node_count < 0:
            raise ValueError(f"node_count must be >= 0, got {node_count!r}")
        self.out: list[dict[int, int]] = [{} for _ in range(node_count)]

    @property
    def node_count(self) -> int:
        return len(self.out)

    def link(self, a: int, b: int, rel: int) -> None:
        """Add relationship ``rel`` from ``a`` to ``b``; self edges are dropped."""
        if a == b:
            return
        succ = self.out[a]
        succ[b] = succ.get(b, 0) | rel

    def rels(self, a: int, b: int) -> int:
        """The relationship mask of edge a -> b, 0 if none."""
        return self.out[a].get(b, 0)

    def edge_count(self, mask: int = ALL) -> int:
        return sum(1 for succ in self.out for m in succ.values() if m & mask)

    def is_empty(self) -> bool:
        return not any(self.out)

    def strongly_connected_components(
        self, mask: int = ALL, nodes: Iterable[int] | None = None, preferred: bool = False
    ) -> list[list[int]]:
        """Non-trivial SCCs (two or more transactions) over edges in ``mask``.

        With ``nodes``, only those transactions and the edges between them
        count. With ``preferred``, an edge counts only if its preferred
        relationship (see ``preferred_rel``) is in ``mask``. Each SCC is
        sorted; the list is sorted by smallest member.
        """
        out = self.out
        if nodes is None:
            members = None
            order: Iterable[int] = range(len(out))
        else:
            members = set(nodes)
            order = sorted(members)
        index_of: dict[int, int] = {}
        low: dict[int, int] = {}
        on_stack: set[int] = set()
        stack: list[int] = []
        result: list[list[int]] = []
        counter = 0
        for root in order:
            if root in index_of:
                continue
            # Iterative Tarjan: each frame is (node, iterator over successors).
            index_of[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            work = [(root, iter(out[root].items()))]
            while work:
                node, successors = work[-1]
                advanced = False
                for succ, rel in successors:
                    if preferred:
                        rel &= -rel
                    if not rel & mask:
                        continue
                    if members is not None and succ not in members:
                        continue
                    if succ not in index_of:
                        index_of[succ] = low[succ] = counter
                        counter += 1
                        stack.append(succ)
                        on_stack.add(succ)
                        work.append((succ, iter(out[succ].items())))
                        advanced = True
                        break
                    if succ in on_stack and index_of[succ] < low[node]:
                        low[node] = index_of[succ]
                if advanced:
                    continue
                work.pop()
                if work:
                    parent = work[-1][0]
                    if low[node] < low[parent]:
                        low[parent] = low[node]
                if low[node] == index_of[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        component.sort()
                        result.append(component)
        result.sort(key=lambda c: c[0])
        return result


# Search state bits.
_LAST_RW = 1  # the last edge taken was rw
_MANY_RW = 2  # two or more rw edges so far (the first edge included)
_ADJACENT_RW = 4  # two consecutive rw edges somewhere
_USED_VARIANT = 8  # a process or realtime edge was taken


@dataclass(frozen=True)
class CycleSpec:
    """What a cycle must look like to show one anomaly.

    ``first``: relationship the first edge is taken as (the distinguished
    edge: rw for G-single/G-nonadjacent/G2-item, wr for G1c, ww for G0).
    ``rest``: relationships other edges may be taken as.
    ``rw_rule``: ``"none"`` (no further rw), ``"nonadjacent"`` (one or more
    further rw, never two in a row, also across the wrap-around), or
    ``"adjacent"`` (one or more further rw, two of them consecutive).
    ``variant``: PROCESS or REALTIME if at least one such edge is required.
    """

    name: str
    first: int
    rest: int
    rw_rule: str = "none"
    variant: int = 0

    @property
    def mask(self) -> int:
        return self.first | self.rest


def _base_specs() -> list[CycleSpec]:
    return [
        CycleSpec("G0", WW, WW),
        CycleSpec("G1c", WR, WW | WR),
        CycleSpec("G-single", RW, WW | WR),
        CycleSpec("G-nonadjacent", RW, WW | WR | RW, "nonadjacent"),
        CycleSpec("G2-item", RW, WW | WR | RW, "adjacent"),
    ]


def _variant(spec: CycleSpec, variant: int) -> CycleSpec:
    suffix = "-process" if variant == PROCESS else "-realtime"
    return CycleSpec(spec.name + suffix, spec.first, spec.rest | variant, spec.rw_rule, variant)


#: Every cycle anomaly searched for, most severe first (Elle's search order:
#: data-only anomalies, then process, then realtime variants).
CYCLE_SPECS: tuple[CycleSpec, ...] = tuple(
    _base_specs()
    + [_variant(s, PROCESS) for s in _base_specs()]
    + [_variant(s, REALTIME) for s in _base_specs()]
)
CYCLE_SPECS_BY_NAME: dict[str, CycleSpec] = {s.name: s for s in CYCLE_SPECS}
CYCLE_ANOMALY_TYPES: frozenset[str] = frozenset(CYCLE_SPECS_BY_NAME)


def _step(spec: CycleSpec, state: int, rel: int) -> int:
    """State after taking an edge as ``rel``; -1 if the spec forbids it."""
    if rel == RW:
        if spec.rw_rule == "none":
            return -1
        if state & _LAST_RW:
            if spec.rw_rule == "nonadjacent":
                return -1
            return state | _MANY_RW | _ADJACENT_RW
        return state | _LAST_RW | _MANY_RW
    state &= ~_LAST_RW
    if rel & (PROCESS | REALTIME):
        state |= _USED_VARIANT
    return state


def _accepts(spec: CycleSpec, state: int) -> bool:
    """May a path in ``state`` close back into the first edge?"""
    if spec.variant and not state & _USED_VARIANT:
        return False
    if spec.rw_rule == "nonadjacent":
        # The first edge is rw, so the last must not be.
        return bool(state & _MANY_RW) and not state & _LAST_RW
    if spec.rw_rule == "adjacent":
        return bool(state & _MANY_RW) and bool(state & (_ADJACENT_RW | _LAST_RW))
    return True


def _initial_state(spec: CycleSpec) -> int:
    return _LAST_RW if spec.first == RW else 0


def find_cycle(
    graph: DependencyGraph,
    nodes: Iterable[int],
    spec: CycleSpec,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[tuple[int, int]] | None:
    """A cycle in ``nodes`` matching ``spec``, or None if there is none.

    Returns ``[(t0, rel0), (t1, rel1), ...]``: edge i goes from t_i to
    t_{i+1} (the last back to t0) and is taken as relationship ``rel_i``.
    Raises SearchTimeout once ``clock()`` passes ``deadline``.
    """
    out = graph.out
    mask = spec.mask
    # A cycle of allowed edges lies inside one SCC of the allowed subgraph.
    for component in graph.strongly_connected_components(mask, nodes, preferred=True):
        members = set(component)
        # For each start b, the transactions x with a possible first edge x -> b.
        into: dict[int, list[int]] = {}
        for x in component:
            for b, rel in out[x].items():
                if rel & -rel == spec.first and b in members:
                    into.setdefault(b, []).append(x)
        for b in sorted(into):
            found = _bfs_from(out, members, spec, b, set(into[b]), deadline, clock)
            if found is not None:
                return found
    return None


def _bfs_from(
    out: list[dict[int, int]],
    members: set[int],
    spec: CycleSpec,
    start: int,
    closers: set[int],
    deadline: float,
    clock: Callable[[], float],
) -> list[tuple[int, int]] | None:
    initial = (start, _initial_state(spec))
    parent: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {initial: None}
    queue = deque([initial])
    rest = spec.rest
    steps = 0
    while queue:
        steps += 1
        # Read the clock on the first step and then every 1024 steps.
        if steps & 1023 == 1 and clock() > deadline:
            raise SearchTimeout(spec.name)
        key = queue.popleft()
        node, state = key
        if node in closers and node != start and _accepts(spec, state):
            cycle = _reconstruct(parent, key, spec.first)
            if cycle is not None:
                return cycle
        for succ, rels in out[node].items():
            if succ not in members:
                continue
            rel = rels & -rels
            if not rel & rest:
                continue
            next_state = _step(spec, state, rel)
            if next_state < 0:
                continue
            next_key = (succ, next_state)
            if next_key in parent:
                continue
            parent[next_key] = (key, rel)
            queue.append(next_key)
    return None


def _reconstruct(
    parent: dict[tuple[int, int], tuple[tuple[int, int], int] | None],
    end: tuple[int, int],
    first_rel: int,
) -> list[tuple[int, int]] | None:
    # Walk back from the closing transaction to the start; the closing edge
    # (end -> start) is the spec's first edge.
    path: list[tuple[int, int]] = []
    key = end
    link = parent[key]
    while link is not None:
        previous, rel = link
        path.append((previous[0], rel))
        key = previous
        link = parent[key]
    path.reverse()
    cycle = [(end[0], first_rel)] + path
    transactions = [t for t, _ in cycle]
    if len(set(transactions)) != len(transactions):
        # The BFS may revisit a transaction in another state; such a walk is
        # not a simple cycle, and its simple sub-cycles are a different anomaly.
        return None
    return cycle


def any_cycle(graph: DependencyGraph, nodes: Iterable[int], mask: int = ALL) -> list[tuple[int, int]]:
    """Some shortest cycle through the smallest transaction of an SCC.

    Used as the fallback witness when a typed search times out; ``nodes`` must
    be strongly connected over ``mask``.
    """
    members = set(nodes)
    start = min(members)
    out = graph.out
    parent: dict[int, tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ, rels in out[node].items():
            rel = rels & -rels
            if succ not in members or not rel & mask:
                continue
            if succ == start:
                path = [(node, rel)]
                while parent[node] is not None:
                    previous, previous_rel = parent[node]
                    path.append((previous, previous_rel))
                    node = previous
                path.reverse()
                return path
            if succ not in parent:
                parent[succ] = (node, rel)
                queue.append(succ)
    raise ValueError(f"transactions {sorted(members)[:10]}... are not strongly connected")


def classify(rels: list[int]) -> str:
    """Elle's name for a cycle whose edges are taken as ``rels``."""
    rw = rels.count(RW)
    adjacent = any(
        rels[i] == RW and rels[i - 1] == RW for i in range(len(rels))
    )  # i - 1 wraps: the last edge precedes the first
    if rw == 1:
        base = "G-single"
    elif rw > 1:
        base = "G2-item" if adjacent else "G-nonadjacent"
    elif WR in rels:
        base = "G1c"
    elif WW in rels:
        base = "G0"
    else:
        raise ValueError(f"cannot classify a cycle of only {[REL_NAMES[r] for r in rels]}")
    if REALTIME in rels:
        return base + "-realtime"
    if PROCESS in rels:
        return base + "-process"
    return base
