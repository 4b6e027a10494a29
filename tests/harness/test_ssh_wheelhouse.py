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


def test_wheels_are_built_from_a_clean_copy_never_in_the_work_tree(tmp_path):
    from harness.wheelhouse import clean_copy

    root = tmp_path / "project"
    (root / "broker" / "__pycache__").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "logquake"\nversion = "1.2.3"\n'
                                         '[tool.setuptools.packages.find]\ninclude = ["broker*"]\n')
    (root / "README.md").write_text("read me\n")
    (root / "broker" / "a.py").write_text("x = 1\n")
    (root / "broker" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"compiled")
    (root / "build" / "lib" / "broker").mkdir(parents=True)
    (root / "build" / "lib" / "broker" / "stale.py").write_text("removed long ago\n")
    copy = clean_copy(root)
    try:
        assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == [
            "README.md", "broker/a.py", "pyproject.toml"]
    finally:
        import shutil
        shutil.rmtree(copy)
