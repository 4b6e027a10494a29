"""The Wing-Gong linearizability search with Lowe's improvements.

Input: a history as a list of events in real-time order, each the call or the
return of one operation, and for each operation a step closure (`models.py`).
Output: whether some sequential order of the operations, consistent with real time
and with the model, explains every returned operation (linearizability, Herlihy &
Wing 1990).

Algorithm (Wing & Gong 1993, as improved by Lowe, "Testing for linearizability",
Concurrency and Computation 2017, and used by Horn & Kroening, "Faster
linearizability checking via P-compositionality", FORTE 2015, and Porcupine):
- The events form a doubly linked list. The search scans it from the head. At a
  call whose operation can take effect in the current model state, it linearizes
  the operation: it removes (lifts) the call and its return from the list, pushes
  (call, previous state) on a stack and rescans from the head. At a return, the
  operation it belongs to was not linearized in time, so the search backtracks: it
  pops the last linearized operation, puts its events back and scans on from the
  call after it.
- A cache of configurations (the set of linearized operations as an int bitset,
  model state) prunes every configuration seen before (Lowe's memoisation); two
  searches reaching the same configuration have the same future. The bitset is
  kept relative to the first operation not yet linearized (every earlier one is),
  so its size follows the concurrency of the history, not its length; without
  this a long history costs memory quadratic in its length.
- Operations with an unknown outcome (`info`, or never completed) have a call and
  no return: nothing forces them to be linearized, so they may take effect any time
  after their call, or never. The search succeeds when no return is left.
- A nondeterministic step (`models.Choices`) is tried with each of its next states.
- Read-only operations (`read_only`: the caller's model says the step returns the
  state it is given or INCONSISTENT, whatever the state: a read, a kv get) are
  taken eagerly, a reduction in the spirit of partial-order methods (Godefroid,
  "Partial-Order Methods for the Verification of Concurrent Systems", 1996): at
  each new configuration, a read pass looks at the calls before the first return,
  and if one of a read-only op is consistent with the state, linearizes it and
  tries nothing else from this configuration. No linearization is lost: if the
  configuration (L, s) has a successful continuation S, with the enabled read r
  somewhere in S, then r followed by S without r succeeds from (L, s) too. r does
  not change the state, it holds at s, and nothing in S had returned before r
  was called (every op in S is unlinearized, so its return is after the first
  unlinearized return, after r's call). Only the configurations where no read
  can be taken scan the other calls (skipping the reads, known to be
  inconsistent there). On the generated 50-client kv histories of
  bench/checkers.py this about halves the configurations explored (168,000 to
  91,000 for the valid one); the same generator's 24 histories of seeds 3-8 (10
  and 50 clients, valid and invalid) took 6 s in all instead of 63 s. The
  counterexample keeps the same blamed return and the same set of states (below
  the cap): every state the plain search blocks in at R is also reached, after
  eager reads only, by a configuration with no read left to take, which then
  blocks at R; only which paths are kept, and in what order states are found,
  may differ.
- Dead states of string models (`string_hints`: a kv key, whose string a get
  observes whole, a put replaces whatever it was, and an append extends). Why
  this matters: in the generated 50-client kv histories of bench/checkers.py
  an op lasts 0.5-20 s with gaps of at most 2 s, so a key has several appends
  in flight at once; each order of them gives a different string, and the scan
  takes them in call order, so a wrong order is found out only at the return of
  a later get that saw the string, after every interleaving of the ops in
  between was tried from it (1,022,199 configurations on one key of seed 14,
  3,079,034 on one of seed 20). The cut: the current state s can only grow by
  appends until a put is linearized. Call an unlinearized get of g with a return
  "pinned" when every put whose value is a prefix of g and whose call is before
  that return is already linearized. A pinned get can only take effect in a
  state s + x, x a concatenation of appends: a put taking effect between now
  and the get would leave its value + appends, so its value must be a prefix of
  g, and it must be called before the get's return (the scan never passes the
  return of an unlinearized op), and no such put is left. So if s is not a
  prefix of g, the get can never be linearized from this configuration, nor from
  any configuration after it: the configuration is dead and is not pushed (it
  stays in the cache, so it is not reached again). This only removes
  configurations with no successful continuation, so every verdict is kept. The
  counterexample too: a dead configuration, and every configuration after it,
  blocks at some return no later than its witness (the pinned get's return,
  which stays in the list), so pruning it changes nothing if the blamed return
  R (the furthest any configuration blocks at) is after the witness. So the
  search keeps each configuration it pruned whose witness is not before the
  furthest return blocked at so far (its op, state and stack: the stack is a
  linked list of tuples, so keeping it copies nothing). When the search of an
  invalid history ends, it resumes from each kept configuration whose witness is
  not before the furthest return blocked at by then, one at a time (the list of
  events is rebuilt from the configuration's stack), with the same cache, and
  prunes only configurations whose witness is before that return. The
  configurations explored are then a subset of the unpruned search's and a
  superset of those reached without passing a configuration dead with a witness
  before R, so the furthest return blocked at is R, and every configuration that
  blocks at R is reached, as is every one on its way there: each has linearized
  every op that returns before R, so none is dead with an earlier witness. The
  same op is blamed, with the same states. On seeds 10-29 of that generator
  (valid and invalid, 400 key searches) the configurations explored fall from
  19.6 million to 0.97 million, the worst key from 3,079,034 to 95,670. (Until
  2026-12-07 an invalid history was searched a second time from the start
  instead of resumed: on seeds 4 and 8 that doubled the work, 109,298 and
  109,353 configurations where resuming adds 55, and 103,448 and 103,449 where
  it adds 1.)
- Unobservable string states (with `string_hints`, when every observe has a
  return). Call a state s unobservable in a configuration (L, s) when no
  observe outside L has a value that s is a prefix of. Two configurations
  (L, s) and (L, s') with both unobservable have the same futures: until a
  reset, the state is s + x (or s' + x), a prefix of no observe still to come,
  so no observe can take effect in either, and extends do the same to both;
  after a reset both hold the same string. So the cache keeps one stand-in for
  every unobservable state of a set L, and the search explores one of them.
  Whether s is unobservable is decided by a binary search of the sorted observe
  values (those with s as a prefix are adjacent), reading L before the op just
  taken (a superset of what is left to observe, so never merging wrongly). Why
  this matters: every order of the appends in flight makes a different string,
  and where no get pins them (a get pins only once every put it may follow was
  taken) the search took each: 2,100,844 configurations (7.4 s) for one key of
  bench/checkers.py's invalid history of seed 32, 9,331 (0.04 s) with the
  merging. The verdict and the blamed op are kept: equivalent configurations
  block at the same returns. The states reported at the blamed return are all
  the observable ones, but of the unobservable ones only those of
  configurations explored: when one of those is among them and some state was
  merged, `blocked_states_partial` says the list may leave out others of its
  kind (which could not have produced what the blamed op saw, if it is a get).

Counterexample: an invalid history has a first return event R (in history order)
such that the history up to R has no linearization. The search blocks at the
return furthest down the list exactly at R (a configuration that passes R
linearized every operation that returned before it), so we record the furthest
return the search blocked at, the model states of every configuration blocked
there (the states the model could be in when the operation of R had to take
effect), and for each such state one path of operations leading to it.

Budgets: the search checks `time.monotonic()` every few thousand steps against a
deadline, and stops when the cache outgrows `max_cache_bytes`; either way it
answers "unknown" with a reason. The cache's size is estimated at the same
points: the number of entries times a running mean of sampled entry sizes (the
tuple, set slot and bitset ints, plus `approx_size` of the model state), so
models whose states grow (kv strings, queues) are measured, not guessed. The
clock is the one exception to the checkers' no-clocks rule: it only decides
whether we give up, never the verdict of a search that finishes.

Thread-safety: `search` keeps all its state in locals; it is safe to run several
searches at once in threads or processes.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from sys import getsizeof
from typing import Any

from checkers.linearizable.models import INCONSISTENT, Choices

# How many search steps (configurations pushed) between two looks at the clock.
_CLOCK_EVERY_STEPS = 4096
# A cache entry besides its bitsets and state: the 4-tuple, its set slot, `base`.
_ENTRY_OVERHEAD_BYTES = 160
# How many distinct model states a counterexample reports at most.
MAX_BLOCK_STATES = 1000
# The `choices` of a stack cell whose read-only op was linearized as soon as it could be.
_FORCED = object()
_HINT_KINDS = ("observe", "reset", "extend")
# The cache's stand-in for every unobservable string state (see the module docstring).
_UNOBSERVABLE = object()
# Beyond this many (reset, observe) links per operation, dead-state pruning is not used.
_MAX_HINT_LINKS_PER_OP = 32


@dataclass
class SearchResult:
    """What one search found.

    valid: True, False or "unknown". For False: `blocked_op` is the operation whose
    return could not be reached, `blocked_states` the model states it could have
    taken effect in, `final_paths` one list of (operation id, state after it) per
    state (a longest linearizable prefix ending in that state), in the order found.
    """

    valid: Any
    reason: str | None = None
    cache_entries: int = 0
    steps: int = 0
    resumed: int = 0  # dead configurations resumed from after the search (see the module docstring)
    blocked_op: int | None = None
    # True when `blocked_states` may leave out unobservable states merged into one of them (module docstring)
    blocked_states_partial: bool = False
    blocked_states: list[Hashable] = field(default_factory=list)
    final_paths: list[list[tuple[int, Hashable]]] = field(default_factory=list)


def approx_size(value: Any, depth: int = 3) -> int:
    """Bytes of a state: sys.getsizeof, plus the elements of tuples and sets down to `depth`."""
    size = getsizeof(value)
    if depth and isinstance(value, tuple | frozenset):
        size += sum(approx_size(v, depth - 1) for v in value)
    return size


def _path(op_of: list[int], top: tuple | None, state: Hashable) -> list[tuple[int, Hashable]]:
    """(op, state after it) from the first linearized op to the top of a stack."""
    path = []
    after = state
    while top is not None:
        path.append((op_of[top[0]], after))
        after = top[1]
        top = top[7]
    path.reverse()
    return path


def search(
    events: Sequence[tuple[int, bool]],
    steps: Sequence[Callable[[Hashable], Any]],
    initial_state: Hashable,
    deadline: float | None = None,
    max_cache_bytes: int | None = None,
    max_final_paths: int = 10,
    max_block_states: int = MAX_BLOCK_STATES,
    read_only: Sequence[bool] | None = None,
    string_hints: Sequence[tuple[str, Any]] | None = None,
) -> SearchResult:
    """Search for a linearization.

    events: (op id, is_call) in real-time order; every op id in range(len(steps))
    has exactly one call, and at most one return, after its call.
    steps: per op id, a closure state -> next state | INCONSISTENT | Choices.
    deadline: a time.monotonic() value after which the answer is "unknown".
    max_cache_bytes: when the cache is estimated to hold more, the answer is "unknown".
    max_final_paths, max_block_states: how many paths and states to keep for a
    counterexample (the states beyond `max_block_states` are not reported).
    read_only: per op id, True if its step never changes a state (it returns the
    state it is given or INCONSISTENT, whatever the state): such an op is
    linearized as soon as it can be, with no alternative tried (see the module
    docstring). None: no op is taken to be read-only.
    string_hints: per op id, what the op does to a model whose states are
    strings (kv over one key), for the dead-state pruning of the module
    docstring: ("observe", v) for a step that returns the state iff it is the
    string v, else INCONSISTENT (a get of v); ("reset", v) for a step that
    returns v whatever the state (a put of v); ("extend", None) for a step that
    returns the state followed by something, or INCONSISTENT (an append; a get
    of an unknown value, which returns the state). None, or an initial state
    that is not a string: no pruning.
    """
    if string_hints is not None:
        if len(string_hints) != len(steps):
            raise ValueError(f"string_hints has {len(string_hints)} hints for {len(steps)} operations")
        for op, hint in enumerate(string_hints):
            if not (isinstance(hint, tuple) and len(hint) == 2 and hint[0] in _HINT_KINDS
                    and (hint[1] is None if hint[0] == "extend" else isinstance(hint[1], str))):
                raise ValueError(
                    f"string_hints[{op}] is {hint!r}; expected (\"observe\", str), (\"reset\", str) "
                    "or (\"extend\", None)"
                )
        if not isinstance(initial_state, str):
            string_hints = None  # a state that is not a string (a user's `initial` map may hold any value): no pruning
    return _search(events, steps, initial_state, deadline, max_cache_bytes, max_final_paths, max_block_states,
                   read_only, string_hints)


def _search(
    events: Sequence[tuple[int, bool]],
    steps: Sequence[Callable[[Hashable], Any]],
    initial_state: Hashable,
    deadline: float | None,
    max_cache_bytes: int | None,
    max_final_paths: int,
    max_block_states: int,
    read_only: Sequence[bool] | None,
    string_hints: Sequence[tuple[str, Any]] | None,
) -> SearchResult:
    """`search` once its arguments are checked."""
    n_ops = len(steps)
    n_events = len(events)
    head = 0
    end = n_events + 1
    # Node i + 1 is events[i]; node 0 is the head and node `end` the tail sentinel.
    nxt = list(range(1, n_events + 2)) + [end]
    prv = [head] + list(range(0, n_events + 1))
    op_of = [0] * (n_events + 2)
    is_call = [False] * (n_events + 2)
    call_node = [-1] * n_ops
    ret_node = [-1] * n_ops
    for i, (op, call) in enumerate(events):
        node = i + 1
        op_of[node] = op
        is_call[node] = call
        if call:
            if call_node[op] != -1:
                raise ValueError(f"operation {op} has two calls")
            call_node[op] = node
        else:
            if call_node[op] == -1 or ret_node[op] != -1:
                raise ValueError(f"operation {op} returns before its call or twice")
            ret_node[op] = node
    if any(c == -1 for c in call_node):
        raise ValueError("every operation needs a call event")
    if read_only is not None and len(read_only) != n_ops:
        raise ValueError(f"read_only has {len(read_only)} flags for {n_ops} operations")
    returns_left = sum(1 for r in ret_node if r != -1)
    # Bit positions: operations with a return get ranks 0, 1, ... in call order;
    # operations without one (info) get ranks -1, -2, ... and live in a separate
    # bitset, so an info op that is never linearized does not pin the window below.
    rank_of = [0] * n_ops
    n_required = n_info = 0
    for op, call in events:
        if call:
            if ret_node[op] != -1:
                rank_of[op] = n_required
                n_required += 1
            else:
                n_info += 1
                rank_of[op] = -n_info
    # A return node nobody will ever block at again needs no bookkeeping; we keep
    # only the furthest blocking node and what we saw there.
    block_max = -1
    block_states: dict[Hashable, list[tuple[int, Hashable]] | None] = {}

    # The set of linearized operations is (base, bits, info): every required op
    # of rank < base is linearized, the one of rank base is not, bit i of `bits`
    # says whether rank base + i is, and bit j of `info` whether info op -(j + 1)
    # is. This form is canonical and its ints stay as wide as the window of
    # concurrent operations, not the whole history, so cache keys stay small.
    cache: set = set()
    cache_add = cache.add
    # The stack is a linked list of tuples (entry, state before, base, bits,
    # info, choices, choice index, parent) so that a counterexample can keep a
    # path by keeping its top cell: copying the stack at every new blocking point
    # would make a long valid history cost quadratic time. `choices` is None for
    # a deterministic step, the Choices of a nondeterministic one, or _FORCED for
    # a read-only op linearized as soon as it could be (no sibling to try).
    stack: tuple | None = None
    # The stack cell below which this search does not backtrack: None, or the dead configuration resumed from.
    floor: tuple | None = None
    state = initial_state
    base = bits = info = 0
    entry = nxt[head]
    n_steps = 0
    # A step is a configuration pushed (every scan between two is bounded by the
    # list's length). Few steps between looks at the clock and the cache's size
    # at first, so a small budget is noticed early; then every _CLOCK_EVERY_STEPS.
    next_clock = 256
    sampled_bytes = samples = 0

    def advance(rank: int, base: int, bits: int, info: int) -> tuple[int, int, int]:
        if rank < 0:
            return base, bits, info | (1 << ~rank)
        shift = rank - base
        if shift:
            return base, bits | (1 << shift), info
        filled = bits | 1
        ones = (~filled & (filled + 1)).bit_length() - 1
        return base + ones, filled >> ones, info

    def unknown(reason: str) -> SearchResult:
        return SearchResult("unknown", reason=reason, cache_entries=len(cache), steps=n_steps, resumed=n_resumed)

    def over_budget(new_bits: int, new_info: int, new_state: Hashable) -> SearchResult | None:
        """The "unknown" result if the clock or the cache's estimated size is past its budget."""
        nonlocal sampled_bytes, samples
        if deadline is not None and time.monotonic() > deadline:
            return unknown(f"time limit reached after {n_steps} search steps")
        if max_cache_bytes is not None:
            sampled_bytes += (
                _ENTRY_OVERHEAD_BYTES + getsizeof(new_bits) + getsizeof(new_info) + approx_size(new_state)
            )
            samples += 1
            # a kept dead configuration, or a first unobservable state, holds about as much as a cache entry
            entries = len(cache) + len(kept) + len(first_unobservable)
            estimate_bytes = entries * sampled_bytes // samples
            if estimate_bytes > max_cache_bytes:
                return unknown(
                    f"memory limit reached: about {estimate_bytes} bytes in {entries} "
                    f"cached configurations (limit {max_cache_bytes})"
                )
        return None

    # Per node, so the hot loop does one lookup: `scan_step` holds the step
    # closure of a call node's op, None for a return node and False for a call
    # of a read-only op (the scan skips it: see the read pass below); `read_step`
    # the step closure of read-only calls only. Also the op's rank and its return node.
    scan_step: list = [None] * (n_events + 2)
    read_step: list = [None] * (n_events + 2)
    node_rank = [0] * (n_events + 2)
    node_ret = [-1] * (n_events + 2)
    any_read = False
    for node in range(1, n_events + 1):
        if is_call[node]:
            op = op_of[node]
            if read_only is not None and read_only[op]:
                scan_step[node] = False
                read_step[node] = steps[op]
                any_read = True
            else:
                scan_step[node] = steps[op]
            node_rank[node] = rank_of[op]
            node_ret[node] = ret_node[op]

    # Dead-state pruning (see the module docstring). An observe of g with a
    # return is "pinned" while every reset whose value is a prefix of g and whose
    # call is before g's return is linearized (`candidates_left` counts the
    # others): it can then only see the current state followed by extensions, so
    # a state that is not a prefix of g is dead. `hinted[op]`: the op is such an
    # observe, or a reset that some observe counts.
    pinned: set = set()
    hinted = [False] * n_ops
    observe_value: list = [None] * n_ops
    candidates_left = [0] * n_ops
    observed = [False] * n_ops  # per hinted observe: linearized
    reset_observes: list = [()] * n_ops
    if string_hints is not None:
        resets_by_value: dict[str, list[int]] = {}
        for op, (kind, value) in enumerate(string_hints):
            if kind == "reset":
                resets_by_value.setdefault(value, []).append(op)
        lengths = sorted({len(v) for v in resets_by_value})
        links: dict[int, list[int]] = {}
        n_links = 0
        for op, (kind, value) in enumerate(string_hints):
            if kind != "observe" or ret_node[op] == -1:
                continue  # an observe without a return need never take effect
            observe_value[op] = value
            hinted[op] = True
            r = ret_node[op]
            for length in lengths:
                if length > len(value):
                    break
                for reset in resets_by_value.get(value[:length], ()):
                    if call_node[reset] < r:
                        links.setdefault(reset, []).append(op)
                        candidates_left[op] += 1
                        n_links += 1
            if not candidates_left[op]:
                pinned.add(op)
            if n_links > _MAX_HINT_LINKS_PER_OP * (n_ops + 32):
                # Many resets write the same values: little to gain, too much to track.
                string_hints = None
                break
        if string_hints is None:
            pinned = set()
            hinted = [False] * n_ops
        else:
            for reset, observers in links.items():
                reset_observes[reset] = observers
                hinted[reset] = True
    hints_on = string_hints is not None
    # Unobservable states (see the module docstring): the values of the observes with a return, sorted, and
    # their ops; merging is off when an observe has no return (it may take effect or not, so it is not in
    # `observed`) or without hints.
    merge = hints_on and not any(
        kind == "observe" and ret_node[op] == -1 for op, (kind, _) in enumerate(string_hints or ()))
    by_value = sorted((observe_value[op], op) for op in range(n_ops) if observe_value[op] is not None)
    observe_values = [v for v, _ in by_value]
    observe_ops = [op for _, op in by_value]
    n_observes = len(observe_values)
    # Whether the states recorded at block_max include an unobservable one (then, if any state was merged,
    # others may have been, and the states reported are some of those the op could have taken effect in).
    block_partial = False

    # The first unobservable state cached per set of linearized ops, and whether another was merged into one.
    first_unobservable: dict[tuple[int, int, int], str] = {}
    merged = False

    def unobservable(state: str) -> bool:
        """No observe that is not linearized yet has `state` as a prefix of its value."""
        i = bisect_left(observe_values, state)
        while i < n_observes and observe_values[i].startswith(state):
            if not observed[observe_ops[i]]:
                return False
            i += 1
        return True

    def cache_state(base: int, bits: int, info: int, state: str) -> Any:
        """What the cache keeps of `state` with the linearized set (base, bits, info)."""
        nonlocal merged
        if not unobservable(state):
            return state
        if first_unobservable.setdefault((base, bits, info), state) != state:
            merged = True
        return _UNOBSERVABLE

    # Dead configurations pruned while their witness was not before block_max, as (witness, call node, state,
    # base, bits, info, parent's stack, parent's state, base, bits, info); and whether the search now resumes
    # from them, pruning only below block_max (see the module docstring).
    kept: list[tuple] = []
    resuming = False
    n_resumed = 0

    def lift_hint(op: int) -> None:
        """Bookkeeping of `pinned` when op is linearized."""
        if observe_value[op] is not None:
            observed[op] = True
            pinned.discard(op)
            return
        for g in reset_observes[op]:
            left = candidates_left[g] - 1
            candidates_left[g] = left
            if not left and not observed[g]:
                pinned.add(g)

    def unlift_hint(op: int) -> None:
        """Bookkeeping of `pinned` when op's linearization is undone."""
        if observe_value[op] is not None:
            observed[op] = False
            if not candidates_left[op]:
                pinned.add(op)
            return
        for g in reset_observes[op]:
            left = candidates_left[g]
            candidates_left[g] = left + 1
            if not left:
                pinned.discard(g)

    def lift_unless_dead(node: int, new_state: str, choices: Any, new_base: int, new_bits: int, new_info: int,
                         stack: tuple | None, state: str, base: int, bits: int, info: int) -> bool:
        """True if the configuration reached from (stack, state, base, bits, info)
        by linearizing node's op into `new_state` is dead and may be pruned
        (nothing lifted; kept for resuming if its witness is not before
        block_max); else False, with the op's bookkeeping lifted. A
        nondeterministic step is never pruned."""
        op = op_of[node]
        if hinted[op]:
            lift_hint(op)
        if pinned and choices is None:
            w = witness(new_state)
            if w < (block_max if resuming else end):
                if hinted[op]:
                    unlift_hint(op)
                if not resuming and w >= block_max:
                    kept.append((w, node, new_state, new_base, new_bits, new_info, stack, state, base, bits, info))
                return True
        return False

    def lift_node(node: int) -> int:
        """Lift a call node and its return out of the list, with its op's bookkeeping; 1 if it had a return."""
        nxt[prv[node]] = nxt[node]
        prv[nxt[node]] = prv[node]
        op = op_of[node]
        if hinted[op]:
            lift_hint(op)
        r = node_ret[node]
        if r == -1:
            return 0
        nxt[prv[r]] = nxt[r]
        prv[nxt[r]] = prv[r]
        return 1

    def put_back_node(node: int) -> int:
        """Undo lift_node(node) (the return first, then the call); 1 if it had a return."""
        r = node_ret[node]
        if r != -1:
            nxt[prv[r]] = r
            prv[nxt[r]] = r
        nxt[prv[node]] = node
        prv[nxt[node]] = node
        if hinted[op_of[node]]:
            unlift_hint(op_of[node])
        return r != -1

    def unwind(top: tuple | None) -> int:
        """Put back every op of the stack `top` (top first); the number of returns put back."""
        put_back = 0
        while top is not None:
            put_back += put_back_node(top[0])
            top = top[7]
        return put_back

    def rebuild(top: tuple | None) -> int:
        """Lift every op of the stack `top` (bottom first), from a full list; the number of returns lifted."""
        cells = []
        while top is not None:
            cells.append(top[0])
            top = top[7]
        return sum(lift_node(node) for node in reversed(cells))

    def witness(state: str) -> int:
        """The earliest return of a pinned observe that `state` cannot lead to, else `end`."""
        w = end
        for g in pinned:
            if ret_node[g] < w and not observe_value[g].startswith(state):
                w = ret_node[g]
        return w

    # Each pass of the outer loop starts at a configuration not seen before.
    while returns_left:
        dead = False
        if any_read:
            # The read pass: linearize the first read-only call, before the first
            # return, that is consistent with the state, and try nothing else here.
            node = nxt[head]
            first_other = 0
            while True:
                step = scan_step[node]
                if step is None:
                    break
                if step is False and read_step[node](state) is not INCONSISTENT:
                    break
                if not first_other and step is not False:
                    first_other = node
                node = nxt[node]
            if step is False:
                rank = node_rank[node]
                new_base, new_bits, new_info = advance(rank, base, bits, info)
                size = len(cache)
                cache_add((new_base, new_bits, new_info, cache_state(new_base, new_bits, new_info, state) if merge
                           else state))
                if len(cache) == size:
                    # Its only successor failed before: so does this configuration.
                    dead = True
                else:
                    n_steps += 1
                    if n_steps >= next_clock:
                        next_clock += _CLOCK_EVERY_STEPS
                        stop = over_budget(new_bits, new_info, state)
                        if stop is not None:
                            return stop
                    stack = (node, state, base, bits, info, _FORCED, 0, stack)
                    if hinted[op_of[node]]:
                        lift_hint(op_of[node])
                    base, bits, info = new_base, new_bits, new_info
                    nxt[prv[node]] = nxt[node]
                    prv[nxt[node]] = prv[node]
                    r = node_ret[node]
                    if r != -1:
                        nxt[prv[r]] = nxt[r]
                        prv[nxt[r]] = prv[r]
                        returns_left -= 1
                    continue
            else:
                # No read can take effect here, so the scan below skips reads.
                entry = first_other or node
        else:
            entry = nxt[head]
        # The scan: try each call in list order, until a return.
        while True:
            if not dead:
                step = scan_step[entry]
                if step:
                    new_state = step(state)
                    if new_state is not INCONSISTENT:
                        # advance(), inlined: this is the hot path.
                        rank = node_rank[entry]
                        if rank < 0:
                            new_base, new_bits, new_info = base, bits, info | (1 << ~rank)
                        else:
                            shift = rank - base
                            new_info = info
                            if shift:
                                new_base, new_bits = base, bits | (1 << shift)
                            else:
                                filled = bits | 1
                                ones = (~filled & (filled + 1)).bit_length() - 1
                                new_base, new_bits = base + ones, filled >> ones
                        choices = None
                        index = 0
                        if type(new_state) is Choices:
                            choices = new_state
                            for index, candidate in enumerate(choices):
                                if (new_base, new_bits, new_info, candidate) not in cache:
                                    new_state = candidate
                                    break
                            else:
                                new_state = INCONSISTENT
                        if new_state is not INCONSISTENT:
                            # add() and compare sizes: one hash of the key, not two.
                            size = len(cache)
                            cache_add((new_base, new_bits, new_info,
                                       cache_state(new_base, new_bits, new_info, new_state) if merge else new_state))
                            if len(cache) != size and not (hints_on and lift_unless_dead(
                                    entry, new_state, choices, new_base, new_bits, new_info, stack, state, base, bits,
                                    info)):
                                n_steps += 1
                                if n_steps >= next_clock:
                                    next_clock += _CLOCK_EVERY_STEPS
                                    stop = over_budget(new_bits, new_info, new_state)
                                    if stop is not None:
                                        return stop
                                stack = (entry, state, base, bits, info, choices, index, stack)
                                state = new_state
                                base, bits, info = new_base, new_bits, new_info
                                # Lift the call and its return out of the list (lift_node(), inlined).
                                nxt[prv[entry]] = nxt[entry]
                                prv[nxt[entry]] = prv[entry]
                                r = node_ret[entry]
                                if r != -1:
                                    nxt[prv[r]] = nxt[r]
                                    prv[nxt[r]] = prv[r]
                                    returns_left -= 1
                                break
                    entry = nxt[entry]
                    continue
                if step is False:
                    # A read-only call: the read pass found it inconsistent here.
                    entry = nxt[entry]
                    continue
                # A return: its operation was not linearized before it.
                if entry >= block_max:
                    if entry > block_max:
                        block_max = entry
                        block_states = {}
                        block_partial = False
                    if state not in block_states and len(block_states) < max_block_states:
                        block_states[state] = (stack, state) if len(block_states) < max_final_paths else None
                        if merge and not block_partial and unobservable(state):
                            block_partial = True
            # Backtrack.
            dead = False
            pushed = False
            while True:
                if stack is floor:
                    # Everything from the root (or from the dead configuration resumed from) was tried.
                    if not block_states:
                        raise AssertionError("an invalid history must block at some return")
                    while kept and kept[-1][0] < block_max:
                        kept.pop()
                    if kept:
                        # Resume from a dead configuration that may block at block_max (see the module docstring).
                        w, node, new_state, base, bits, info, parent, state, pbase, pbits, pinfo = kept.pop()
                        resuming = True
                        n_resumed += 1
                        returns_left += unwind(stack)
                        returns_left -= rebuild(parent)
                        returns_left -= lift_node(node)
                        stack = floor = (node, state, pbase, pbits, pinfo, None, 0, parent)
                        state = new_state
                        pushed = True
                        break
                    paths = [_path(op_of, *p) for p in block_states.values() if p is not None]
                    return SearchResult(
                        False,
                        cache_entries=len(cache),
                        steps=n_steps,
                        resumed=n_resumed,
                        blocked_op=op_of[block_max],
                        blocked_states_partial=block_partial and merged,
                        blocked_states=list(block_states),
                        final_paths=paths[:max_final_paths],
                    )
                entry, state, base, bits, info, choices, index, stack = stack
                op = op_of[entry]
                # Put the return back, then the call (put_back_node(), inlined: the hot path).
                r = ret_node[op]
                if r != -1:
                    nxt[prv[r]] = r
                    prv[nxt[r]] = r
                    returns_left += 1
                nxt[prv[entry]] = entry
                prv[nxt[entry]] = entry
                if hinted[op]:
                    unlift_hint(op)
                if choices is _FORCED:
                    # A read taken as soon as it could be: its configuration fails with it.
                    continue
                if choices is not None:
                    # Try the next untried state of a nondeterministic step.
                    new_base, new_bits, new_info = advance(rank_of[op], base, bits, info)
                    for j in range(index + 1, len(choices)):
                        key = (new_base, new_bits, new_info, choices[j])
                        if key not in cache:
                            cache_add(key)
                            stack = (entry, state, base, bits, info, choices, j, stack)
                            state = choices[j]
                            base, bits, info = new_base, new_bits, new_info
                            if hinted[op]:
                                lift_hint(op)
                            nxt[prv[entry]] = nxt[entry]
                            prv[nxt[entry]] = prv[entry]
                            if r != -1:
                                nxt[prv[r]] = nxt[r]
                                prv[nxt[r]] = prv[r]
                                returns_left -= 1
                            pushed = True
                            break
                    if pushed:
                        break
                entry = nxt[entry]
                break
            if pushed:
                break
    return SearchResult(True, cache_entries=len(cache), steps=n_steps, resumed=n_resumed)
