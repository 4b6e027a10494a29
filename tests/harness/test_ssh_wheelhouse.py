"""The wheelhouse the SSH backend uploads: versioned by the project's sources, cached, pruned."""

import os
import time

from harness.wheelhouse import project_root, project_version, prune


def test_version_changes_with_the_sources(tmp_path):
    root = tmp_path / "project"
    (root / "broker").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "logquake"\nversion = "1.2.3"\n'
                                        '[tool.setuptools.packages.find]\ninclude = ["broker*"]\n')
    (root / "broker" / "a.py").write_text("x = 1\n")
    first = project_version(root)
    assert first.startswith("1.2.3-") and len(first) == len("1.2.3-") + 12
    (root / "broker" / "__pycache__").mkdir()
    (root / "broker" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"compiled")
    assert project_version(root) == first, "byte code is not a source"
    (root / "broker" / "a.py").write_text("x = 2\n")
    assert project_version(root) != first


def test_this_checkout_has_a_version():
    assert project_version(project_root()).startswith("0.")


def test_prune_keeps_the_newest(tmp_path):
    now = time.time()
    for i in range(5):
        d = tmp_path / f"0.1.0-{i:012d}"
        d.mkdir()
        os.utime(d, (now - 100 + i, now - 100 + i))
    (tmp_path / ".0.1.0-building").mkdir()
    removed = prune(tmp_path, keep=3)
    assert sorted(p.name for p in removed) == ["0.1.0-000000000000", "0.1.0-000000000001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".0.1.0-building", "0.1.0-000000000002",
                                                          "0.1.0-000000000003", "0.1.0-000000000004"]
