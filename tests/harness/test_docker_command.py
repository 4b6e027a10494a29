"""`logquake docker base|build` and the image helpers: mirror discovery, the source hash, bad arguments,
and a missing Docker daemon (which needs no daemon to test)."""

import os
import subprocess
import sys

import pytest

from harness import docker_command
from harness.wheelhouse import product_packages
from harness.docker_command import debian_mirror, source_hash


def _logquake(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_mirror_from_deb822_sources(tmp_path):
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n"
                       "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert debian_mirror([sources]) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources(tmp_path):
    sources = tmp_path / "sources.list"
    sources.write_text("# comment\ndeb-src http://src.example/debian bookworm main\n"
                       "deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main\n")
    assert debian_mirror([sources]) == "http://mirror.example/debian"


def test_mirror_falls_back_to_deb_debian_org(tmp_path):
    assert debian_mirror([tmp_path / "missing"]) == "http://deb.debian.org/debian"


def _tree(root):
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "Dockerfile").write_text("FROM scratch\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n[tool.setuptools.packages.find]\n"
                                         "include = ['alpha*', 'beta*']\n")
    for package in ("alpha", "beta"):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text(f"# {package}\n")
        (root / package / "__pycache__").mkdir()
        (root / package / "__pycache__" / "x.pyc").write_bytes(b"compiled")


def test_source_hash_follows_the_sources_only(tmp_path):
    _tree(tmp_path)
    first = source_hash(tmp_path)
    assert source_hash(tmp_path) == first
    (tmp_path / "beta" / "__pycache__" / "x.pyc").write_bytes(b"recompiled")
    (tmp_path / "README.md").write_text("docs change nothing in the image")
    assert source_hash(tmp_path) == first
    (tmp_path / "alpha" / "__init__.py").write_text("# changed\n")
    assert source_hash(tmp_path) != first
    changed = source_hash(tmp_path)
    (tmp_path / "docker" / "Dockerfile").write_text("FROM scratch\nRUN true\n")
    assert source_hash(tmp_path) != changed


def test_node_image_tag_depends_on_the_base(tmp_path):
    _tree(tmp_path)
    ours = docker_command.node_image_tag("logquake-base:bookworm", tmp_path)
    slim = docker_command.node_image_tag("python:3.11-slim", tmp_path)
    assert ours.startswith("logquake-node:") and slim.startswith("logquake-node:") and ours != slim


def test_bad_arguments_exit_254():
    out = _logquake("docker")
    assert out.returncode == 254 and "base,build" in out.stderr
    out = _logquake("docker", "frobnicate")
    assert out.returncode == 254 and "frobnicate" in out.stderr
    assert _logquake("--help").stdout.count("logquake docker base") == 1


@pytest.fixture
def no_daemon_env():
    return {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def test_docker_build_without_a_daemon_names_docker_host(no_daemon_env):
    out = _logquake("docker", "build", env=no_daemon_env)
    assert out.returncode == 1
    assert "no Docker daemon answers at unix:///nonexistent/docker.sock" in out.stderr
    assert "DOCKER_HOST" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_test_backend_docker_without_a_daemon_fails_before_any_node(no_daemon_env, tmp_path):
    store = tmp_path / "store"
    out = _logquake("test", "--backend", "docker", "--nemesis", "partition,kill", "--store", str(store), "--quiet",
                    env=no_daemon_env)
    assert out.returncode == 254, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        "logquake test: --backend docker: no Docker daemon answers at unix:///nonexistent/docker.sock "
        f"(DOCKER_HOST=unix:///nonexistent/docker.sock): {out.stderr.split('): ', 1)[1].strip()}"]
    assert "start dockerd or set DOCKER_HOST" in out.stderr
    assert not store.exists()  # nothing ran: no run directory, no history, no fault


def test_the_image_holds_every_package_setuptools_packages():
    """The node image once missed `nodecontrol` (a list of its own went stale): its sources are now
    the packages pyproject.toml names, every one of them."""
    root = docker_command.PROJECT_ROOT
    packaged = {path.relative_to(root).parts[0] for path in docker_command._source_files(root)}
    assert {"broker", "harness", "nemeses", "nodecontrol", "checkers", "workloads", "reports"} <= packaged
    for package in product_packages(root):
        assert (root / package / "__init__.py").is_file(), package
