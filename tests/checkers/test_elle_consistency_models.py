"""The model lattice: implications, prohibited anomalies, and the not/also-not boundary."""

import pytest

from checkers.elle import consistency_models as cm


def test_default_is_strict_serializable():
    assert cm.DEFAULT_CONSISTENCY_MODELS == ("strict-serializable",)
    assert cm.prohibited_anomaly_types(None, None) == cm.anomalies_prohibited_by(["strict-serializable"])


def test_friendly_and_canonical_names():
    assert cm.canonical_model_name("serializable") == "PL-3"
    assert cm.canonical_model_name("repeatable-read") == "PL-2.99"
    assert cm.canonical_model_name("snapshot-isolation") == "PL-SI"
    assert cm.friendly_model_name("PL-3") == "serializable"
    assert cm.friendly_model_name("PL-SS") == "strict-serializable"
    assert cm.canonical_model_name("strong-serializable") == "PL-SS"


@pytest.mark.parametrize(
    "model, implied",
    [
        ("strict-serializable", {"PL-3", "PL-SI", "PL-2.99", "PL-2", "PL-1", "strong-snapshot-isolation"}),
        ("serializable", {"PL-2.99", "PL-SI", "PL-CS", "read-atomic", "PL-1"}),
        ("snapshot-isolation", {"PL-FCV", "PL-2+", "monotonic-atomic-view", "PL-2"}),
        ("repeatable-read", {"PL-CS", "monotonic-atomic-view", "PL-2", "PL-1"}),
    ],
)
def test_implied_models(model, implied):
    assert implied <= cm.all_implied_models([model])
    assert "PL-SS" not in cm.all_implied_models(["serializable"])


@pytest.mark.parametrize(
    "model, prohibited, allowed",
    [
        ("read-uncommitted", {"G0", "duplicate-elements"}, {"G1a", "G1c", "G-single"}),
        ("read-committed", {"G0", "G1a", "G1b", "G1c", "incompatible-order", "dirty-update"}, {"G-single", "G2-item"}),
        # As in Elle, repeatable read forbids G2-item but not G-single: a
        # G-single cycle is only G2-item if its edges are all on items.
        ("repeatable-read", {"G2-item", "lost-update"}, {"G-single", "G-nonadjacent", "G2"}),
        ("snapshot-isolation", {"G-single", "G-nonadjacent", "internal", "lost-update"}, {"G2-item", "G2"}),
        ("serializable", {"G2", "G2-item", "G-single", "internal"}, {"G-single-realtime", "G0-process"}),
        ("strong-session-serializable", {"G-single-process", "G2-process"}, {"G-single-realtime"}),
        ("strict-serializable", {"G-single-realtime", "G0-realtime", "G2-item-process"}, set()),
    ],
)
def test_prohibited_anomalies(model, prohibited, allowed):
    forbidden = cm.anomalies_prohibited_by([model])
    assert prohibited <= forbidden
    assert not allowed & forbidden


@pytest.mark.parametrize(
    "anomalies, weakest",
    [
        (["G0"], ["read-uncommitted"]),
        (["G1c"], ["read-committed"]),
        (["G-single"], ["consistent-view"]),
        (["G-nonadjacent"], ["snapshot-isolation"]),
        (["G2-item"], ["repeatable-read"]),
        (["G-single-realtime"], ["strong-snapshot-isolation"]),
        (["G-single-process"], ["strong-session-snapshot-isolation"]),
        (["G2-item-realtime"], ["strict-serializable"]),
        (["internal"], ["read-atomic"]),
    ],
)
def test_boundary_not(anomalies, weakest):
    assert cm.boundary(anomalies)["not"] == weakest


def test_boundary_splits_weakest_from_the_rest():
    b = cm.boundary(["G2-item"])
    assert b == {
        "not": ["repeatable-read"],
        "also_not": ["serializable", "strict-serializable", "strong-session-serializable"],
    }
    assert "serializable" in cm.boundary(["G-single"])["also_not"]
    assert cm.boundary([]) == {"not": [], "also_not": []}


def test_implied_anomalies():
    assert {"G1c", "G1", "G0-process", "G0-realtime", "G1c-realtime"} <= cm.all_implied_anomalies(["G0"])
    assert "G2-item" in cm.all_implied_anomalies(["lost-update"])
    assert "G1a" in cm.all_implied_anomalies(["incompatible-order"])
    assert "G2-item" not in cm.all_implied_anomalies(["G-single"])


def test_unknown_names_are_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown consistency model\(s\) \['seriallizable'\]; known models are: .*serializable"):
        cm.validate_models(["seriallizable"])
    with pytest.raises(ValueError, match=r"unknown anomaly type\(s\) \['G3'\]; known anomalies are: .*G2-item"):
        cm.validate_anomalies(["G3"])


def test_extra_anomalies_extend_the_prohibited_set():
    assert "G2-item" not in cm.prohibited_anomaly_types(["snapshot-isolation"], None)
    assert {"G2-item", "lost-update"} <= cm.prohibited_anomaly_types(["snapshot-isolation"], ["G2-item"])
