"""Elle's lattice of transactional consistency models and the anomalies each forbids.

What: three small directed acyclic graphs, written as plain dicts, and pure
functions over them:

- ``IMPLIED_ANOMALIES``: anomaly -> anomalies it implies (G0 implies G1c, an
  ``internal`` anomaly is ...). An edge a -> b reads "every history showing a
  also shows b".
- ``MODELS``: model -> weaker models it implies (strict-serializable implies
  serializable, ...). An edge a -> b reads "a history satisfying a satisfies b".
- ``DIRECT_PROSCRIBED``: model -> the anomalies it forbids on top of the
  models it implies.

A model is *ruled out* by a history when the history shows an anomaly that
the model (or any weaker model it implies) proscribes, including anomalies
implied by the ones observed. ``boundary`` splits the ruled-out models into
``not`` (the weakest ones) and ``also_not`` (the rest), as Elle reports them.

Names: Elle accepts friendly names (``serializable``) and Adya's names
(``PL-3``); internally every model is canonicalised to Adya's name where one
exists, and results use the friendly name, exactly as Elle does, so a Jepsen
user recognises every line. Unknown names raise ``ValueError`` naming the
unknown model and listing the known ones.

Invariants: the three graphs are acyclic (checked at import: a cycle would make
"implies" meaningless and the closure functions loop-free only by accident).

Thread-safety: module state is immutable after import; every function is pure.

Sources:
- Adya, "Weak Consistency: A Generalized Theory and Optimistic
  Implementations for Distributed Transactions" (PhD thesis, MIT 1999);
  Adya, Liskov, O'Neil, "Generalized Isolation Level Definitions" (ICDE 2000).
- Bailis et al., "Highly Available Transactions: Virtues and Limitations"
  (VLDB 2014).
- Cerone, Bernardi, Gotsman, "A Framework for Transactional Consistency Models
  with Atomic Visibility" (CONCUR 2015); Cerone, Gotsman, "Analysing Snapshot
  Isolation" (PODC 2016).
- Daudjee, Salem, "Lazy Database Replication with Snapshot Isolation" (VLDB 2006).
- Kingsbury, Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
  Observations" (VLDB 2020), and the model relations Elle encodes in
  jepsen-io/elle ``consistency_model.clj`` (facts restated here as data).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Anomaly -> anomalies it implies. Process and realtime variants follow from
#: processes being single-threaded: a process-order edge is also a realtime edge.
IMPLIED_ANOMALIES: dict[str, tuple[str, ...]] = {
    "G0": ("G1c", "G0-process"),
    "G0-process": ("G1c-process", "G0-realtime"),
    "G0-realtime": ("G1c-realtime",),
    "G1a": ("G1",),
    "G1b": ("G1",),
    "G1c": ("G1", "G1c-process"),
    "G1c-process": ("G1c-realtime", "G1-process"),
    "G1c-realtime": ("G1-realtime",),
    "G1": ("G1-process",),
    "G1-process": ("G1-realtime",),
    "G-single-item": ("G-single", "G-single-item-process", "G-nonadjacent-item"),
    "G-single-item-process": (
        "G-single-process",
        "G-single-item-realtime",
        "G-nonadjacent-item-process",
    ),
    "G-single-item-realtime": ("G-single-realtime", "G-nonadjacent-item-realtime"),
    "G-single": ("G-nonadjacent", "GSIb", "G-single-process"),
    "G-single-process": ("G-nonadjacent-process", "G-single-realtime"),
    "G-single-realtime": ("G-nonadjacent-realtime",),
    "G-nonadjacent-item": ("G-nonadjacent", "G2-item", "G-nonadjacent-item-process"),
    "G-nonadjacent-item-process": (
        "G-nonadjacent-process",
        "G2-item-process",
        "G-nonadjacent-item-realtime",
    ),
    "G-nonadjacent-item-realtime": ("G2-item-realtime", "G-nonadjacent-realtime"),
    "G-nonadjacent": ("G2", "G-nonadjacent-process"),
    "G-nonadjacent-process": ("G2-process", "G-nonadjacent-realtime"),
    "G-nonadjacent-realtime": ("G2-realtime",),
    "G2": ("G2-process",),
    "G2-item": ("G2", "G2-item-process"),
    "G2-item-process": ("G2-process", "G2-item-realtime"),
    "G2-item-realtime": ("G2-realtime",),
    "G2-process": ("G2-realtime",),
    "GSIa": ("GSI",),
    "GSIb": ("GSI",),
    # Two committed reads that cannot come from one append order imply that
    # some read saw state that was never committed.
    "incompatible-order": ("G1a",),
    # A read of a write its own transaction performs later is a trivial
    # wr self-cycle.
    "future-read": ("G1c",),
    # A committed write on top of an aborted one: the write-side twin of G1a.
    "dirty-update": ("G1a",),
    # Lost update is write skew on a single key (Bailis), so also G2-item.
    "lost-update": ("write-skew", "G2-item"),
    "write-skew": ("G2",),
}

#: Canonical (Adya) names for friendly model names.
CANONICAL_MODEL_NAMES: dict[str, str] = {
    "consistent-view": "PL-2+",
    "conflict-serializable": "PL-3",
    "cursor-stability": "PL-CS",
    "forward-consistent-view": "PL-FCV",
    "monotonic-snapshot-read": "PL-MSR",
    "monotonic-view": "PL-2L",
    "read-committed": "PL-2",
    "read-uncommitted": "PL-1",
    "repeatable-read": "PL-2.99",
    "serializable": "PL-3",
    "snapshot-isolation": "PL-SI",
    "strict-serializable": "PL-SS",
    "strong-serializable": "PL-SS",
    "update-serializable": "PL-3U",
    "strong-session-read-uncommitted": "strong-session-PL-1",
    "strong-session-read-committed": "strong-session-PL-2",
    "strong-read-uncommitted": "strong-PL-1",
    "strong-read-committed": "strong-PL-2",
}

#: Friendly names for canonical ones; PL-3 reads best as "serializable".
FRIENDLY_MODEL_NAMES: dict[str, str] = {
    canonical: friendly for friendly, canonical in CANONICAL_MODEL_NAMES.items()
}
FRIENDLY_MODEL_NAMES["PL-3"] = "serializable"
FRIENDLY_MODEL_NAMES["PL-SS"] = "strict-serializable"


def canonical_model_name(model: str) -> str:
    """Adya's name for ``model`` if it has one, else ``model`` itself."""
    return CANONICAL_MODEL_NAMES.get(model, model)


def friendly_model_name(model: str) -> str:
    """The friendly name for a canonical model name, else the name itself."""
    return FRIENDLY_MODEL_NAMES.get(model, model)


def _canonical_graph(graph: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for source, targets in graph.items():
        bucket = out.setdefault(canonical_model_name(source), [])
        for target in targets:
            target = canonical_model_name(target)
            if target not in bucket:
                bucket.append(target)
    return {source: tuple(targets) for source, targets in out.items()}


#: Model -> weaker models it implies (friendly names here, canonicalised below).
MODELS: dict[str, tuple[str, ...]] = _canonical_graph(
    {
        "causal-cerone": ["read-atomic"],
        "consistent-view": ["cursor-stability", "monotonic-view"],
        "conflict-serializable": ["view-serializable"],
        "cursor-stability": ["read-committed", "PL-2"],
        "forward-consistent-view": ["consistent-view"],
        "PL-2": ["PL-1"],
        "PL-3": ["repeatable-read", "update-serializable"],
        "update-serializable": ["forward-consistent-view"],
        "monotonic-atomic-view": ["read-committed"],
        "monotonic-view": ["PL-2"],
        "monotonic-snapshot-read": ["PL-2"],
        "parallel-snapshot-isolation": ["causal-cerone", "ROLA"],
        "prefix": ["causal-cerone"],
        "read-atomic": ["monotonic-atomic-view"],
        "read-committed": ["read-uncommitted"],
        "repeatable-read": ["cursor-stability", "monotonic-atomic-view"],
        "ROLA": ["read-atomic"],
        "serializable": ["repeatable-read", "snapshot-isolation", "view-serializable"],
        "session-serializable": ["1SR"],
        "snapshot-isolation": [
            "forward-consistent-view",
            "monotonic-atomic-view",
            "monotonic-snapshot-read",
            "parallel-snapshot-isolation",
            "prefix",
        ],
        "strict-serializable": [
            "PL-3",
            "serializable",
            "linearizable",
            "snapshot-isolation",
            "strong-snapshot-isolation",
            "strong-session-serializable",
        ],
        "strong-session-PL-1": ["PL-1"],
        "strong-session-PL-2": ["PL-2", "strong-session-PL-1"],
        "strong-PL-1": ["strong-session-PL-1"],
        "strong-PL-2": ["strong-session-PL-2", "strong-PL-1"],
        "strong-session-serializable": [
            "serializable",
            "strong-session-snapshot-isolation",
        ],
        "strong-session-snapshot-isolation": [
            "snapshot-isolation",
            "strong-session-PL-2",
        ],
        "strong-serializable": ["session-serializable"],
        "strong-snapshot-isolation": [
            "strong-session-snapshot-isolation",
            "strong-PL-2",
        ],
        "linearizable": ["sequential"],
        "sequential": ["causal"],
        "causal": ["writes-follow-reads", "PRAM"],
        "PRAM": ["monotonic-reads", "monotonic-writes", "read-your-writes"],
    }
)

#: Model -> anomalies it forbids beyond those of the models it implies.
#: Friendly and canonical spellings of one model (serializable, PL-3) merge.
#: ``*-cycle-exists`` anomalies are kept so the lattice matches Elle's, though
#: this package reports concrete cycles, not bare cycle existence.
DIRECT_PROSCRIBED: dict[str, tuple[str, ...]] = _canonical_graph(
    {
        "causal-cerone": ["internal", "G1a"],
        "cursor-stability": ["G1", "G-cursor", "lost-update"],
        "monotonic-view": ["G1", "G-monotonic"],
        "monotonic-snapshot-read": ["G1", "G-MSR"],
        "consistent-view": ["G1", "G-single"],
        "forward-consistent-view": ["G1", "G-SIb"],
        "parallel-snapshot-isolation": ["internal", "G1a"],
        "PL-3": ["G1", "G2", "predicate-read-miss", "PL-3-cycle-exists"],
        "PL-2": ["G1", "PL-2-cycle-exists"],
        "PL-1": ["G0", "duplicate-elements", "cyclic-versions", "PL-1-cycle-exists"],
        "prefix": ["internal", "G1a"],
        "serializable": ["internal"],
        # Generalised SI forbids any cycle whose rw edges are all
        # non-adjacent, not only G-single (Cerone & Gotsman 2016).
        "snapshot-isolation": [
            "internal",
            "G1",
            "G-SI",
            "G-nonadjacent",
            "PL-SI-cycle-exists",
        ],
        "read-atomic": ["internal", "G1a", "future-read"],
        "repeatable-read": ["G1", "G2-item", "PL-2.99-cycle-exists", "lost-update"],
        "ROLA": ["lost-update"],
        "strict-serializable": [
            "G1",
            "G1c-realtime",
            "G2-realtime",
            "PL-SS-cycle-exists",
        ],
        "strong-session-PL-1": ["strong-session-PL-1-cycle-exists", "G0-process"],
        "strong-session-PL-2": ["strong-session-PL-2-cycle-exists", "G1c-process"],
        "strong-PL-1": ["strong-PL-1-cycle-exists", "G0-realtime"],
        "strong-PL-2": ["strong-PL-2-cycle-exists", "G1c-realtime"],
        "strong-session-snapshot-isolation": [
            "internal",
            "G1-process",
            "G-nonadjacent-process",
            "strong-session-snapshot-isolation-cycle-exists",
        ],
        "strong-snapshot-isolation": [
            "internal",
            "G1-realtime",
            "G-nonadjacent-realtime",
            "strong-snapshot-isolation-cycle-exists",
        ],
        "strong-session-serializable": [
            "G1-process",
            "G2-process",
            "strong-session-serializable-cycle-exists",
        ],
        "update-serializable": ["G1", "G-update"],
    }
)

#: Every model name accepted, canonical and friendly.
ALL_MODELS: frozenset[str] = frozenset(
    set(MODELS)
    | {m for targets in MODELS.values() for m in targets}
    | set(CANONICAL_MODEL_NAMES)
    | set(CANONICAL_MODEL_NAMES.values())
)

#: Anomalies Elle names; ``unknown`` ones make a result ``"unknown"``, not false.
UNKNOWN_ANOMALY_TYPES: frozenset[str] = frozenset(
    {"empty-transaction-graph", "cycle-search-timeout"}
)

ALL_ANOMALIES: frozenset[str] = frozenset(
    set(IMPLIED_ANOMALIES)
    | {a for targets in IMPLIED_ANOMALIES.values() for a in targets}
    | {a for targets in DIRECT_PROSCRIBED.values() for a in targets}
    | UNKNOWN_ANOMALY_TYPES
)


def _reverse(graph: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            out.setdefault(target, []).append(source)
    return {k: tuple(v) for k, v in out.items()}


_IMPLYING_ANOMALIES = _reverse(IMPLIED_ANOMALIES)
_STRONGER_MODELS = _reverse(MODELS)
_PROSCRIBING_MODELS = _reverse(DIRECT_PROSCRIBED)


def _closure(graph: Mapping[str, Iterable[str]], start: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(graph.get(node, ()))
    return seen


def _assert_acyclic(graph: Mapping[str, Iterable[str]], name: str) -> None:
    for node in graph:
        for child in graph[node]:
            assert node not in _closure(graph, [child]), f"{name} has a cycle through {node}"


_assert_acyclic(IMPLIED_ANOMALIES, "IMPLIED_ANOMALIES")
_assert_acyclic(MODELS, "MODELS")


def validate_models(models: Iterable[str]) -> list[str]:
    """Return ``models`` as a list, or raise ValueError naming the unknown ones."""
    if isinstance(models, str):
        raise ValueError(
            f"consistency_models must be a collection of model names, got the string "
            f"{models!r}; write [{models!r}]"
        )
    models = list(models)
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown:
        raise ValueError(
            f"unknown consistency model(s) {unknown!r}; known models are: "
            f"{', '.join(sorted(ALL_MODELS))}"
        )
    return models


def validate_anomalies(anomalies: Iterable[str]) -> list[str]:
    """Return ``anomalies`` as a list, or raise ValueError naming unknown ones."""
    if isinstance(anomalies, str):
        raise ValueError(
            f"anomalies must be a collection of anomaly names, got the string "
            f"{anomalies!r}; write [{anomalies!r}]"
        )
    anomalies = list(anomalies)
    unknown = [a for a in anomalies if a not in ALL_ANOMALIES]
    if unknown:
        raise ValueError(
            f"unknown anomaly type(s) {unknown!r}; known anomalies are: "
            f"{', '.join(sorted(ALL_ANOMALIES))}"
        )
    return anomalies


def all_implied_models(models: Iterable[str]) -> set[str]:
    """Canonical names of ``models`` and every model they imply."""
    return _closure(MODELS, [canonical_model_name(m) for m in validate_models(models)])


def all_impossible_models(impossible: Iterable[str]) -> set[str]:
    """Canonical names of ``impossible`` and every stronger model."""
    return _closure(
        _STRONGER_MODELS, [canonical_model_name(m) for m in validate_models(impossible)]
    )


def all_implied_anomalies(anomalies: Iterable[str]) -> set[str]:
    """``anomalies`` and every anomaly they imply."""
    return _closure(IMPLIED_ANOMALIES, anomalies)


def all_anomalies_implying(anomalies: Iterable[str]) -> set[str]:
    """``anomalies`` and every anomaly that would imply one of them."""
    return _closure(_IMPLYING_ANOMALIES, anomalies)


def anomalies_prohibited_by(models: Iterable[str]) -> set[str]:
    """Anomalies that cannot be present if all of ``models`` hold."""
    direct: list[str] = []
    for model in all_implied_models(models):
        direct.extend(DIRECT_PROSCRIBED.get(model, ()))
    return all_anomalies_implying(direct)


def anomalies_to_impossible_models(anomalies: Iterable[str]) -> set[str]:
    """Canonical names of the models ruled out by observing ``anomalies``."""
    models: list[str] = []
    for anomaly in all_implied_anomalies(anomalies):
        models.extend(_PROSCRIBING_MODELS.get(anomaly, ()))
    return _closure(_STRONGER_MODELS, models)


def _most_models(direction: Mapping[str, Iterable[str]], models: Iterable[str]) -> set[str]:
    # Drop every model that another model of the set already covers in
    # ``direction``; the lattice is small, so brute force is fine.
    result = {canonical_model_name(m) for m in models}
    for model in sorted(result):
        others = result - {model}
        reachable = _closure(direction, direction.get(model, ()))
        if others & reachable:
            result = others
    return result


def weakest_models(models: Iterable[str]) -> set[str]:
    """The subset of ``models`` implied by all the rest (canonical names)."""
    return _most_models(MODELS, models)


def strongest_models(models: Iterable[str]) -> set[str]:
    """The subset of ``models`` which implies all the rest (canonical names)."""
    return _most_models(_STRONGER_MODELS, models)


def boundary(anomalies: Iterable[str]) -> dict[str, list[str]]:
    """``{"not": weakest ruled-out models, "also_not": the other ruled-out ones}``.

    Both lists hold friendly names, sorted.
    """
    impossible = anomalies_to_impossible_models(anomalies)
    weakest = weakest_models(impossible)
    return {
        "not": sorted({friendly_model_name(m) for m in weakest}),
        "also_not": sorted({friendly_model_name(m) for m in impossible - weakest}),
    }


#: The default Elle uses: ``:consistency-models [:strict-serializable]``.
DEFAULT_CONSISTENCY_MODELS: tuple[str, ...] = ("strict-serializable",)


def prohibited_anomaly_types(
    consistency_models: Iterable[str] | None, anomalies: Iterable[str] | None
) -> set[str]:
    """Anomalies that fail a check asking for ``consistency_models`` and ``anomalies``."""
    models = DEFAULT_CONSISTENCY_MODELS if consistency_models is None else consistency_models
    prohibited = anomalies_prohibited_by(models)
    if anomalies:
        prohibited |= all_anomalies_implying(validate_anomalies(anomalies))
    return prohibited


def reportable_anomaly_types(
    consistency_models: Iterable[str] | None, anomalies: Iterable[str] | None
) -> set[str]:
    """Prohibited anomalies plus those that make a result unknown."""
    return prohibited_anomaly_types(consistency_models, anomalies) | UNKNOWN_ANOMALY_TYPES
