"""The typed dependency graph: SCCs, typed cycle search, classification, time budget."""

import random

import networkx as nx
import pytest

from checkers.elle.graph import (
    ALL,
    CYCLE_SPECS_BY_NAME,
    PROCESS,
    REALTIME,
    RW,
    WR,
    WW,
    DependencyGraph,
    SearchTimeout,
    any_cycle,
    classify,
    find_cycle,
    preferred_rel,
)

FAR = float("inf")


def graph(n, *edges):
    g = DependencyGraph(n)
    for a, b, rel in edges:
        g.link(a, b, rel)
    return g


def search(g, name, nodes=None):
    return find_cycle(g, range(g.node_count) if nodes is None else nodes, CYCLE_SPECS_BY_NAME[name], FAR)


def test_self_edges_are_dropped_and_relationships_merge():
    g = graph(2, (0, 0, WW), (0, 1, WW), (0, 1, RW))
    assert g.out == [{1: WW | RW}, {}]
    assert g.edge_count() == 1
    assert preferred_rel(WW | RW) == WW
    assert preferred_rel(RW | REALTIME) == RW


def test_sccs_match_networkx_on_random_graphs():
    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(1, 30)
        edges = [(rng.randrange(n), rng.randrange(n), rng.choice([WW, WR, RW])) for _ in range(rng.randint(0, 60))]
        g = graph(n, *edges)
        ours = {frozenset(c) for c in g.strongly_connected_components(ALL)}
        nxg = nx.DiGraph()
        nxg.add_nodes_from(range(n))
        nxg.add_edges_from((a, b) for a, b, _ in edges if a != b)
        theirs = {frozenset(c) for c in nx.strongly_connected_components(nxg) if len(c) > 1}
        assert ours == theirs
        ww_only = {frozenset(c) for c in g.strongly_connected_components(WW)}
        nxw = nx.DiGraph()
        nxw.add_edges_from((a, b) for a, b, rel in edges if a != b and rel == WW)
        assert ww_only == {frozenset(c) for c in nx.strongly_connected_components(nxw) if len(c) > 1}


def test_deep_graphs_need_no_recursion():
    n = 50_000
    g = graph(n, *[(i, i + 1, WW) for i in range(n - 1)], (n - 1, 0, WR))
    assert [len(c) for c in g.strongly_connected_components()] == [n]


def test_g0_and_g1c():
    g = graph(3, (0, 1, WW), (1, 0, WW), (1, 2, WR), (2, 1, WW))
    # A cycle starts with its distinguished edge, into the smallest target.
    assert search(g, "G0") == [(1, WW), (0, WW)]
    assert search(g, "G1c") == [(1, WR), (2, WW)]
    assert search(graph(2, (0, 1, WW), (1, 0, RW)), "G1c") is None


def test_g_single_takes_exactly_one_rw():
    g = graph(3, (0, 1, RW), (1, 2, WR), (2, 0, WW))
    assert search(g, "G-single") == [(0, RW), (1, WR), (2, WW)]
    assert search(g, "G2-item") is None
    assert search(g, "G-nonadjacent") is None


def test_g_nonadjacent_needs_separated_rw_edges():
    g = graph(4, (0, 1, RW), (1, 2, WR), (2, 3, RW), (3, 0, WR))
    assert search(g, "G-nonadjacent") == [(0, RW), (1, WR), (2, RW), (3, WR)]
    assert search(g, "G-single") is None
    assert search(g, "G2-item") is None


def test_g2_item_needs_adjacent_rw_edges():
    g = graph(3, (0, 1, RW), (1, 2, RW), (2, 0, WW))
    assert search(g, "G2-item") == [(0, RW), (1, RW), (2, WW)]
    assert search(g, "G-nonadjacent") is None
    # Adjacent across the wrap-around: the last edge and the first.
    g = graph(3, (0, 1, RW), (1, 2, WW), (2, 0, RW))
    assert classify([cycle_rel for _, cycle_rel in search(g, "G2-item")]) == "G2-item"


def test_variants_need_a_process_or_realtime_edge():
    g = graph(2, (0, 1, RW), (1, 0, REALTIME))
    assert search(g, "G-single") is None
    assert search(g, "G-single-process") is None
    assert search(g, "G-single-realtime") == [(0, RW), (1, REALTIME)]
    g = graph(2, (0, 1, WW), (1, 0, PROCESS))
    assert search(g, "G0-process") == [(0, WW), (1, PROCESS)]
    assert search(g, "G0") is None


def test_edges_are_taken_as_their_preferred_relationship():
    # 1 -> 0 is both ww and rw: it is a ww edge, so this is G0, not G-single.
    g = graph(2, (0, 1, WW), (1, 0, WW | RW))
    assert search(g, "G0") == [(1, WW), (0, WW)]
    assert search(g, "G-single") is None


def test_search_is_limited_to_the_given_nodes():
    g = graph(4, (0, 1, WW), (1, 0, WW), (2, 3, WR), (3, 2, WR))
    assert search(g, "G0", nodes=[2, 3]) is None
    assert search(g, "G1c", nodes=[2, 3]) == [(3, WR), (2, WR)]


def test_cycles_found_are_simple_and_shortest_through_their_start():
    rng = random.Random(11)
    for _ in range(200):
        n = rng.randint(2, 12)
        edges = [(rng.randrange(n), rng.randrange(n), rng.choice([WW, WR, RW, REALTIME])) for _ in range(rng.randint(2, 40))]
        g = graph(n, *edges)
        for name, spec in CYCLE_SPECS_BY_NAME.items():
            cycle = search(g, name)
            if cycle is None:
                continue
            nodes = [t for t, _ in cycle]
            assert len(set(nodes)) == len(nodes)
            for i, (t, rel) in enumerate(cycle):
                succ = nodes[(i + 1) % len(nodes)]
                assert preferred_rel(g.rels(t, succ)) == rel
            assert classify([rel for _, rel in cycle]) == name


def test_classify():
    assert classify([WW, WW]) == "G0"
    assert classify([WW, WR]) == "G1c"
    assert classify([RW, WR]) == "G-single"
    assert classify([RW, WR, RW, WR]) == "G-nonadjacent"
    assert classify([RW, RW, WR]) == "G2-item"
    assert classify([RW, WR, RW]) == "G2-item"  # last and first are adjacent
    assert classify([WW, PROCESS]) == "G0-process"
    assert classify([RW, PROCESS, REALTIME]) == "G-single-realtime"
    with pytest.raises(ValueError, match="cannot classify"):
        classify([REALTIME, PROCESS])


def test_search_past_the_deadline_raises():
    g = graph(3, (0, 1, RW), (1, 2, WR), (2, 0, WW))
    with pytest.raises(SearchTimeout):
        find_cycle(g, [0, 1, 2], CYCLE_SPECS_BY_NAME["G-single"], deadline=5.0, clock=lambda: 6.0)


def test_any_cycle_and_bad_input():
    g = graph(3, (0, 1, RW), (1, 2, REALTIME), (2, 0, WR))
    assert any_cycle(g, [0, 1, 2]) == [(0, RW), (1, REALTIME), (2, WR)]
    with pytest.raises(ValueError, match="not strongly connected"):
        any_cycle(graph(2, (0, 1, WW)), [0, 1])
    with pytest.raises(ValueError, match="node_count must be >= 0, got -1"):
        DependencyGraph(-1)
