"""A wheelhouse of the project: logquake and every dependency as wheels, for hosts without network access.

`build_wheelhouse()` runs `pip wheel <project> -w DIR` (dependencies included,
since the target may have no package index) plus a wheel of pip itself, so a
target with a bare `python3` (no pip, no ensurepip) can install with
`python3 DIR/pip-*.whl/pip install --no-index --find-links DIR logquake`
(pip runs from its own wheel, a use pip documents for bootstrapping).

Wheelhouses are cached under `~/.cache/logquake/wheelhouse/<version>/`, where
the version is `project_version()`: the package version plus a hash of the
project's source files, so a changed checkout gets a new wheelhouse and a host
that already has this version installed can skip the upload.

Invariant: a cache directory exists only complete (built in a temp directory,
then renamed). Thread-safety: a module lock serialises builds in one process;
two processes building the same version both succeed (the second rename loses
and its copy is removed).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from pathlib import Path

log = logging.getLogger("harness.wheelhouse")

CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "logquake" / "wheelhouse"
_build_lock = threading.Lock()


class WheelhouseError(RuntimeError):
    """The wheelhouse could not be built; the message names the command and its output."""


def project_root() -> Path:
    """The source checkout this harness runs from (the directory holding pyproject.toml)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise WheelhouseError(f"no pyproject.toml in {root}: the project must run from a source checkout "
                              "(pip install -e .) to be uploaded to other hosts")
    return root


def product_packages(root: Path | None = None) -> tuple[str, ...]:
    """The project's top-level packages, read from pyproject.toml's `[tool.setuptools.packages.find] include`:
    the one list of what a wheel, the node image and the source hashes hold."""
    root = root or project_root()
    config = tomllib.loads((root / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return tuple(dict.fromkeys(pattern.rstrip("*").rstrip(".") for pattern in include))


def source_files(root: Path | None = None) -> list[Path]:
    """What a wheel of the project is built from: pyproject.toml and every file of its packages (no byte code)."""
    root = root or project_root()
    files = [root / "pyproject.toml"]
    for package in product_packages(root):
        files.extend(p for p in sorted((root / package).rglob("*"))
                     if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))
    return files


def clean_copy(root: Path | None = None) -> Path:
    """A temporary copy of the sources (and README.md) to build a wheel from: a build in the work tree would
    leave `build/` behind, whose stale modules a later wheel could pick up. The caller removes it."""
    root = root or project_root()
    dest = Path(tempfile.mkdtemp(prefix="logquake-src-"))
    for path in source_files(root) + [root / "README.md"]:
        if path.is_file():
            rel = path.relative_to(root)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / rel)
    return dest


def digest_of(files: list[Path], root: Path) -> str:
    """A SHA-256 (hex) of the files' paths below root and their contents, in the order given."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def project_version(root: Path | None = None) -> str:
    """`<version>-<hash>`: the pyproject version and the first 12 hex digits of a hash of every source file."""
    root = root or project_root()
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    return f"{version}-{digest_of(source_files(root), root)[:12]}"


def build_wheelhouse(root: Path | None = None, cache_root: Path = CACHE_ROOT) -> tuple[str, Path]:
    """Return (version, directory of wheels), building the wheels unless this version is cached."""
    root = root or project_root()
    version = project_version(root)
    target = cache_root / version
    with _build_lock:
        if target.is_dir():
            return version, target
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=cache_root))
        try:
            log.info("building the wheelhouse of %s in %s", version, target)
            source = clean_copy(root)
            try:
                _pip(["wheel", "--quiet", str(source), "-w", str(tmp)])
            finally:
                shutil.rmtree(source, ignore_errors=True)
            _pip(["wheel", "--quiet", "--no-deps", "pip", "-w", str(tmp)])
            try:
                tmp.rename(target)
            except OSError:
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        prune(cache_root, keep=KEEP_VERSIONS)
    return version, target


KEEP_VERSIONS = 3


def prune(cache_root: Path = CACHE_ROOT, keep: int = KEEP_VERSIONS) -> list[Path]:
    """Remove all but the `keep` most recently built wheelhouses (each is tens of MB)."""
    built = sorted((p for p in cache_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    removed = built[keep:]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _pip(args: list[str]) -> None:
    command = [sys.executable, "-m", "pip", *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise WheelhouseError(f"{' '.join(command)} took more than 600 s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise WheelhouseError(f"{' '.join(command)} failed with status {proc.returncode}:\n{tail}")
