"""Property tests: a simulated correct queue yields valid histories; one injected
fault (a lost, duplicated or reordered message) yields the matching anomaly.

The simulation: a log per key; clients that send (ok with the offset, info
with or without effect, or fail without effect), consumers that assign keys
and poll forward from their positions, crashes (an info poll; the thread
continues as a new process) and nemesis ops, interleaved at random by
Hypothesis. A final consumer reads every key from the start, so nothing
acknowledged stays unseen.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.history import History
from checkers.queue import check

KEYS = (1, 2)


class _Sim:
    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.logs: dict[int, list[int]] = {k: [] for k in KEYS}
        self.next_value = 100
        self.process_of_thread = {t: t for t in range(3)}
        self.next_process = 3
        self.assigned: dict[int, dict[int, int]] = {}  # process -> key -> next position
        self.acked: list[tuple[int, int, int]] = []  # (key, offset, value) of ok sends

    def _pair(self, process, f, invoke_value, type, value, **extra) -> None:
        self.rows.append({"process": process, "type": "invoke", "f": f, "value": invoke_value})
        self.rows.append({"process": process, "type": type, "f": f, "value": value, **extra})

    def send(self, thread: int, key: int, outcome: str) -> None:
        process = self.process_of_thread[thread]
        value = self.next_value
        self.next_value += 1
        mop = ["send", key, value]
        if outcome == "fail":
            self._pair(process, "send", [mop], "fail", [mop], error="not-leader")
            return
        if outcome in ("ok", "info-applied"):
            offset = len(self.logs[key])
            self.logs[key].append(value)
        if outcome == "ok":
            self._pair(process, "send", [mop], "ok", [["send", key, [offset, value]]])
            self.acked.append((key, offset, value))
        else:
            self._pair(process, "send", [mop], "info", [mop], error="timeout")
            self._crash(thread)

    def txn(self, thread: int, key: int) -> None:
        """A transaction that polls, then sends: its own send is invisible to its poll
        (read_committed), and both take effect when it commits."""
        process = self.process_of_thread[thread]
        positions = self.assigned.get(process, {})
        result = {}
        for k, position in positions.items():
            pairs = [[o, self.logs[k][o]] for o in range(position, len(self.logs[k]))]
            positions[k] = position + len(pairs)
            result[k] = pairs
        value = self.next_value
        self.next_value += 1
        offset = len(self.logs[key])
        self.logs[key].append(value)
        self.acked.append((key, offset, value))
        self._pair(
            process, "txn", [["poll"], ["send", key, value]], "ok",
            [["poll", result], ["send", key, [offset, value]]],
        )

    def assign(self, thread: int, keys: list[int]) -> None:
        process = self.process_of_thread[thread]
        current = self.assigned.get(process, {})
        self.assigned[process] = {k: current.get(k, 0) for k in keys}
        self._pair(process, "assign", keys, "ok", keys)

    def poll(self, thread: int, limit: int) -> None:
        process = self.process_of_thread[thread]
        positions = self.assigned.get(process, {})
        result = {}
        for k, position in positions.items():
            pairs = [[o, self.logs[k][o]] for o in range(position, min(position + limit, len(self.logs[k])))]
            positions[k] = position + len(pairs)
            result[k] = pairs
        self._pair(process, "poll", [["poll"]], "ok", [["poll", result]])

    def crash_poll(self, thread: int) -> None:
        process = self.process_of_thread[thread]
        self._pair(process, "poll", [["poll"]], "info", [["poll"]], error="timeout")
        self._crash(thread)

    def _crash(self, thread: int) -> None:
        self.process_of_thread[thread] = self.next_process
        self.next_process += 1

    def nemesis(self) -> None:
        self._pair("nemesis", "kill", None, "info", None)

    def final_read(self) -> None:
        process = self.next_process
        self.next_process += 1
        self._pair(process, "assign", list(KEYS), "ok", list(KEYS))
        self.assigned[process] = {k: 0 for k in KEYS}
        self.poll_as(process, 10**6)

    def poll_as(self, process: int, limit: int) -> None:
        positions = self.assigned[process]
        result = {}
        for k, position in positions.items():
            pairs = [[o, self.logs[k][o]] for o in range(position, min(position + limit, len(self.logs[k])))]
            positions[k] = position + len(pairs)
            result[k] = pairs
        self._pair(process, "poll", [["poll"]], "ok", [["poll", result]])


_actions = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 2), st.sampled_from(KEYS),
                  st.sampled_from(["ok", "ok", "ok", "fail", "info-applied", "info-lost"])),
        st.tuples(st.just("assign"), st.integers(0, 2), st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True)),
        st.tuples(st.just("poll"), st.integers(0, 2), st.integers(1, 3)),
        st.tuples(st.just("crash"), st.integers(0, 2)),
        st.tuples(st.just("nemesis"),),
        st.tuples(st.just("txn"), st.integers(0, 2), st.sampled_from(KEYS)),
    ),
    min_size=1,
    max_size=40,
)


def _simulate(actions) -> _Sim:
    sim = _Sim()
    for action in actions:
        kind = action[0]
        if kind == "send":
            sim.send(action[1], action[2], action[3])
        elif kind == "assign":
            sim.assign(action[1], action[2])
        elif kind == "poll":
            sim.poll(action[1], action[2])
        elif kind == "crash":
            sim.crash_poll(action[1])
        elif kind == "txn":
            sim.txn(action[1], action[2])
        else:
            sim.nemesis()
    sim.final_read()
    return sim


def _rewrite_polls(rows, fn):
    """Apply fn(key, pairs) to the results of every completed poll micro-op."""
    out = []
    for row in rows:
        if row["type"] == "ok" and row["f"] in ("poll", "txn"):
            value = [
                ["poll", {k: fn(k, pairs) for k, pairs in mop[1].items()}] if mop[0] == "poll" else mop
                for mop in row["value"]
            ]
            row = dict(row, value=value)
        out.append(row)
    return out


def _stretch(rows, draws):
    """Make ops concurrent: move each invocation to a random earlier point after
    its process's previous op. Effects stay at the completion, inside the
    op's interval, so the history stays one a correct queue could produce."""
    keys = []
    last_key_of_process: dict = {}
    for i, row in enumerate(rows):
        if row["type"] == "invoke":
            low = last_key_of_process.get(row["process"], -1.0)
            keys.append(low + (i + 1 - low) * draws[i % len(draws)])
        else:
            keys.append(float(i + 1))
        last_key_of_process[row["process"]] = keys[-1] if row["type"] != "invoke" else last_key_of_process.get(row["process"], -1.0)
    order = sorted(range(len(rows)), key=lambda i: (keys[i], i))
    return [rows[i] for i in order]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=_actions,
    delivery=st.sampled_from(["at-most-once", "at-least-once", "exactly-once"]),
    draws=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=20),
    ww_deps=st.booleans(),
)
def test_a_correct_queue_is_valid(actions, delivery, draws, ww_deps):
    sim = _simulate(actions)
    rows = _stretch(sim.rows, draws)
    result = check(History.from_dicts(rows), delivery=delivery, ww_deps=ww_deps)
    assert result["valid"] is True, result["anomalies"]
    assert result["anomalies"] == {}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=_actions, data=st.data())
def test_a_lost_message_is_a_lost_write(actions, data):
    sim = _simulate(actions + [("send", 0, 1, "ok"), ("send", 0, 1, "ok")])
    candidates = [(k, o, v) for k, o, v in sim.acked if o + 1 < len(sim.logs[k])]
    key, offset, value = data.draw(st.sampled_from(candidates))
    rows = _rewrite_polls(sim.rows, lambda k, pairs: [p for p in pairs if not (k == key and p[0] == offset)])
    result = check(History.from_dicts(rows))
    assert result["valid"] is False
    lost = [(w["key"], w["value"]) for w in result["anomalies"]["lost-write"]]
    assert lost == [(key, value)]
    assert check(History.from_dicts(rows), delivery="at-most-once")["anomalies"].get("lost-write") is None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=_actions, data=st.data())
def test_a_duplicated_message_is_a_duplicate(actions, data):
    sim = _simulate(actions + [("send", 0, 2, "ok")])
    key, offset, value = data.draw(st.sampled_from(sim.acked))
    end = len(sim.logs[key])
    # The broker appended the message a second time (a retried produce).
    rows = _rewrite_polls(sim.rows, lambda k, pairs: pairs + [[end, value]] if k == key and pairs and pairs[-1][0] == end - 1 else pairs)
    result = check(History.from_dicts(rows))
    assert result["valid"] is False
    assert [(w["key"], w["value"]) for w in result["anomalies"]["duplicate"]] == [(key, value)]
    assert "duplicate" in check(History.from_dicts(rows), delivery="at-least-once")["allowed"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=_actions, data=st.data())
def test_reordered_messages_are_inconsistent_offsets(actions, data):
    sim = _simulate(actions + [("send", 0, 1, "ok"), ("send", 0, 1, "ok")])
    acked_by_key = {}
    for k, o, v in sim.acked:
        acked_by_key.setdefault(k, []).append((o, v))
    key = 1
    (o1, v1), (o2, v2) = sorted(data.draw(st.lists(st.sampled_from(acked_by_key[key]), min_size=2, max_size=2, unique=True)))
    swap = {o1: v2, o2: v1}
    rows = _rewrite_polls(sim.rows, lambda k, pairs: [[o, swap.get(o, v)] if k == key else [o, v] for o, v in pairs])
    result = check(History.from_dicts(rows))
    assert result["valid"] is False
    assert sorted(w["offset"] for w in result["anomalies"]["inconsistent-offsets"]) == [o1, o2]
