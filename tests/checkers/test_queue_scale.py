"""Scale test for the queue checker (slow): a large generated history of a
correct queue with concurrent producers and consumers is valid, and one lost
message among them is found.

Marked slow; the figures for 1,000,000 ops are measured separately (see the
queue checker's report), since timing assertions are unreliable on shared CI.
"""

from __future__ import annotations

import random

import pytest

from checkers.history import History, Op
from checkers.queue import check


def _generate(n_ops: int, seed: int, lose: tuple[int, int] | None = None) -> History:
    """Producers 0-9 send to 8 keys; consumers 10-19 poll 0-2 messages per key.

    Each producer's invocation overlaps the previous op's completion by one
    step, so ops are concurrent. `lose` = (key, offset) drops that message
    from every poll.
    """
    rng = random.Random(seed)
    logs: dict[int, list[int]] = {k: [] for k in range(8)}
    positions = {p: {k: 0 for k in range(8)} for p in range(10, 20)}
    ops: list[Op] = []
    pending: tuple[int, str, list] | None = None
    next_value = 0
    for i in range(n_ops // 2):
        if i % 2 == 0:
            process = i % 10
            k = rng.randrange(8)
            value = next_value
            next_value += 1
            invoke = [["send", k, value]]
            logs[k].append(value)
            done = [["send", k, [len(logs[k]) - 1, value]]]
            f = "send"
        else:
            process = 10 + (i // 2) % 10
            result = {}
            for k, position in positions[process].items():
                count = min(len(logs[k]) - position, rng.randint(0, 2))
                pairs = [[o, logs[k][o]] for o in range(position, position + count) if (k, o) != lose]
                positions[process][k] = position + count
                if pairs:
                    result[k] = pairs
            invoke, done, f = [["poll"]], [["poll", result]], "poll"
        ops.append(Op(len(ops), len(ops), process, "invoke", f, invoke))
        if pending is not None:
            ops.append(Op(len(ops), len(ops), pending[0], "ok", pending[1], pending[2]))
        pending = (process, f, done)
    ops.append(Op(len(ops), len(ops), pending[0], "ok", pending[1], pending[2]))
    final = 99
    ops.append(Op(len(ops), len(ops), final, "invoke", "poll", [["poll"]]))
    everything = {k: [[o, v] for o, v in enumerate(log) if (k, o) != lose] for k, log in logs.items()}
    ops.append(Op(len(ops), len(ops), final, "ok", "poll", [["poll", everything]]))
    return History(ops)


@pytest.mark.slow
def test_a_large_correct_history_is_valid_and_one_loss_is_found():
    history = _generate(100_000, seed=7)
    result = check(history)
    assert result["valid"] is True, result["anomaly_types"]
    assert result["stats"]["messages"] == 25_000
    lost = _generate(100_000, seed=7, lose=(3, 100))
    result = check(lost, max_witnesses=5)
    assert "lost-write" in result["anomaly_types"]
    assert [(w["key"], w["index"]) for w in result["anomalies"]["lost-write"]] == [(3, 100)]
