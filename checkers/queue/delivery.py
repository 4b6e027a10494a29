"""Delivery modes and the promises they make: the one table every output reads.

A run's delivery is its client settings plus the promise its history is held
to. `delivery_of(options)` decides it from a run's options (`delivery` and
`idempotent`, as `test.json` records them), and every output names the run
with it: the test name, `test.json`, `results.json`, the report, `logquake
serve` and `logquake check`. Nothing else maps options to modes or modes to
promises.

| name                       | client settings                       | allowed (not promised)      |
|----------------------------|---------------------------------------|-----------------------------|
| at-most-once               | acks=1 (or 0), no retries             | lost-write, unseen          |
| at-least-once              | acks=all, retries                     | duplicate                   |
| at-least-once-idempotent   | at-least-once + idempotent producer   | nothing                     |
| exactly-once               | idempotent + transactional, read_committed | nothing                |

`read-above-watermark` (a read above the committed point) and
`watermark-regression` (the committed point fell below what was read or
acknowledged) break "nothing aborted or uncommitted is visible" in every mode:
no mode lets a broker serve or withdraw uncommitted data.

`judge_promises` turns a queue checker result into the promise table: for
each promise (nothing lost, nothing aborted visible, nothing duplicated, order
kept, transactions isolated), whether it held, broke, is not promised by the
mode, or could not be judged, and why. The checker attaches it to its result;
reports display it and never judge.

Thread-safety: immutable values and pure functions.

Sources: Kafka's delivery semantics (KIP-98, "Exactly Once Delivery and
Transactional Messaging"); the anomaly names of jepsen.tests.kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ANOMALY_ORDER", "DELIVERY_NAMES", "MODES", "PROMISES", "Delivery", "delivery_of", "judge_promises",
           "parse_delivery"]

# Client-side modes (the `--delivery` flag of `logquake test`).
MODES = ("at-most-once", "at-least-once", "exactly-once")
# Every delivery a history can be judged under (the `--delivery` flag of `logquake check`).
DELIVERY_NAMES = ("at-most-once", "at-least-once", "at-least-once-idempotent", "exactly-once")

_CYCLES = ("G0", "G0-process", "G0-realtime", "G1c", "G1c-process", "G1c-realtime")
_ORDERING = ("inconsistent-offsets", "nonmonotonic-poll", "poll-skip", "nonmonotonic-send", "int-nonmonotonic-poll",
             "int-poll-skip", "int-nonmonotonic-send", "int-send-skip")

# (promise id, the promise in words, the anomalies that break it), most severe first.
PROMISES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("lost", "nothing acknowledged is lost", ("lost-write", "unseen")),
    ("aborted-visible", "nothing aborted or uncommitted is visible",
     ("G1a", "precommitted-read", "read-above-watermark", "watermark-regression")),
    ("duplicated", "nothing is delivered twice", ("duplicate",)),
    ("reordered", "messages keep their log order", _ORDERING),
    ("isolation", "transactions are isolated (no G0/G1c cycle)", _CYCLES),
    ("transactions-end", "every transaction commits or aborts on every partition it wrote, before its producer's "
     "next one and within its timeout: none holds read_committed readers back for ever",
     ("hanging-transaction", "missing-marker")),
)
# Every anomaly name, most severe first: the order reports list them in.
ANOMALY_ORDER: tuple[str, ...] = tuple(name for _, _, names in PROMISES for name in names)

_ALLOWED = {
    "at-most-once": frozenset({"lost-write", "unseen"}),
    "at-least-once": frozenset({"duplicate"}),
    "at-least-once-idempotent": frozenset(),
    "exactly-once": frozenset(),
}
_LABELS = {
    "at-most-once": "at-most-once",
    "at-least-once": "at-least-once",
    "at-least-once-idempotent": "at-least-once with an idempotent producer",
    "exactly-once": "exactly-once",
}
_PROMISE_WORDS = {
    "at-most-once": "messages may be lost, but none is duplicated, reordered or read from a failed send",
    "at-least-once": "nothing acknowledged is lost; duplicates are allowed",
    "at-least-once-idempotent": "nothing acknowledged is lost and nothing is duplicated",
    "exactly-once": "nothing acknowledged is lost, nothing is duplicated, nothing aborted is visible",
}


@dataclass(frozen=True)
class Delivery:
    """A delivery mode as the run used it: `mode` is the client setting, `idempotent` the producer flag."""

    mode: str
    idempotent: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"delivery {self.mode!r} is not known; expected one of {', '.join(MODES)}")
        if self.idempotent and self.mode != "at-least-once":
            raise ValueError(f"--idempotent goes with --delivery at-least-once, not {self.mode} "
                             f"({'exactly-once is idempotent already' if self.mode == 'exactly-once' else 'at-most-once does not retry, so there is nothing to deduplicate'})")

    @property
    def name(self) -> str:
        """The short name, used in test names and `--delivery` of `logquake check`."""
        return f"{self.mode}-idempotent" if self.idempotent else self.mode

    @property
    def label(self) -> str:
        """The name in words, as outputs show it."""
        return _LABELS[self.name]

    @property
    def promise(self) -> str:
        """What the mode promises, in one sentence."""
        return _PROMISE_WORDS[self.name]

    @property
    def allowed(self) -> frozenset[str]:
        """Anomalies the mode does not promise to prevent (reported as allowed, not as errors)."""
        return _ALLOWED[self.name]

    @property
    def not_promised(self) -> frozenset[str]:
        """Ids of the promises the mode does not make."""
        return frozenset(pid for pid, _, names in PROMISES if set(names) & self.allowed)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "idempotent": self.idempotent, "label": self.label,
                "promise": self.promise}


def parse_delivery(name: str) -> Delivery:
    """The delivery of a name from `DELIVERY_NAMES`; ValueError names the choices."""
    if name not in DELIVERY_NAMES:
        raise ValueError(f"delivery {name!r} is not known; expected one of {', '.join(DELIVERY_NAMES)}")
    if name.endswith("-idempotent"):
        return Delivery(name[: -len("-idempotent")], idempotent=True)
    return Delivery(name)


def delivery_of(options: Mapping[str, Any]) -> Delivery:
    """The delivery of a run from its options (`delivery`, `idempotent`), as `test.json` records them.

    Raises ValueError when the options name no known mode (an old or foreign test.json)."""
    mode = options.get("delivery")
    if not isinstance(mode, str):
        raise ValueError(f"the run's options name no delivery mode (delivery = {mode!r})")
    if mode in DELIVERY_NAMES and mode not in MODES:  # already a judged name
        return parse_delivery(mode)
    return Delivery(mode, idempotent=bool(options.get("idempotent", False)))


def _counts(result: Mapping[str, Any], bucket: str) -> dict[str, int]:
    """anomaly name -> count in one bucket ("anomalies" or "allowed") of a queue result."""
    stats = result.get("stats") if isinstance(result.get("stats"), Mapping) else {}
    key = "anomaly_counts" if bucket == "anomalies" else "allowed_counts"
    counts = dict(stats.get(key) or {}) if isinstance(stats.get(key), Mapping) else {}
    group = result.get(bucket)
    if isinstance(group, Mapping):
        for name, witnesses in group.items():
            counts.setdefault(str(name), len(witnesses) if isinstance(witnesses, list) else 1)
    return {n: c for n, c in counts.items() if isinstance(c, int) and c > 0}


def judge_promises(result: Mapping[str, Any], delivery: Delivery | str,
                   undecided: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The promise table of a queue checker result, most severe promise first.

    Each row: `id`, `promise` (words), `status` (`broken`, `held`, `not-promised` or `unknown`),
    `anomalies` and `allowed` (name -> count) and `reason` (a sentence). A promise breaks when an
    anomaly of it is reported (not allowed); it is not promised when the mode allows its anomalies;
    it is unknown when the verdict is not decided or when `undecided` names it (promise id -> why).
    Promises that are neither broken nor seen are listed only for the first four kinds; anomalies
    that no promise names go under an extra row, `other`.
    """
    if isinstance(delivery, str):
        delivery = parse_delivery(delivery)
    undecided = undecided or {}
    broken_counts = _counts(result, "anomalies")
    allowed_counts = _counts(result, "allowed")
    decided = result.get("valid") in (True, False)
    promises = list(PROMISES)
    known = set(ANOMALY_ORDER)
    other = tuple(sorted((set(broken_counts) | set(allowed_counts)) - known))
    if other:
        promises.append(("other", "no other anomaly", other))
    rows = []
    for pid, words, names in promises:
        broken = {n: broken_counts[n] for n in names if n in broken_counts}
        allowed = {n: allowed_counts[n] for n in names if n in allowed_counts}
        if pid in ("isolation", "transactions-end") and not broken and not allowed:
            continue
        if broken:
            status = "broken"
            reason = "broken by " + ", ".join(f"{n} ({c})" for n, c in broken.items())
        elif pid in delivery.not_promised:
            status = "not-promised"
            reason = f"{delivery.label} does not promise it"
        elif pid in undecided:
            status, reason = "unknown", undecided[pid]
        elif not decided:
            status, reason = "unknown", "the checker reached no verdict"
        else:
            status = "held"
            reason = "no anomaly breaks it" + (" (allowed by rule: " + ", ".join(allowed) + ")" if allowed else "")
        rows.append({"id": pid, "promise": words, "status": status, "anomalies": broken, "allowed": allowed,
                     "reason": reason})
    return rows
