"""`logquake docker base` and `logquake docker build`: the images the Docker backend runs.

- `base` builds `logquake-base:bookworm` on hosts without a container registry:
  `debootstrap --variant=minbase bookworm` with python3 and the packages a
  node needs (iptables, iproute2, fuse3, libfaketime, openssh-server), then
  `docker import`. Skipped when the image exists, unless `--force`.
- `build` builds the node image from `docker/Dockerfile` on top of a base
  (ours by default; `--base python:3.11-slim` where a registry is reachable).
  Python packages come from a wheelhouse built on this host (`pip wheel`), so
  the image build needs no network. The tag is `logquake-node:<source hash>`,
  a hash of the project's Python sources, pyproject.toml and the Dockerfile:
  an unchanged project is not rebuilt, a changed one gets a new tag. The
  command also tags it `logquake-node:latest`, which docker/compose.yml runs.

`ensure_node_image()` is what the Docker backend and the test fixtures call:
it builds whatever is missing and returns the node image's tag.

Invariants: the temporary root file system and build context are removed on
success and on failure; nothing here pulls from a registry unless `--base`
names a remote image.

Thread-safety: not thread-safe (one build at a time per process); docker
itself serialises concurrent builds of the same tag.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cli_args import ArgumentParser
from harness.wheelhouse import clean_copy, digest_of, source_files

EXIT_OK, EXIT_FAILED, EXIT_BAD_ARGUMENTS = 0, 1, 254

BASE_IMAGE = "logquake-base:bookworm"
NODE_REPOSITORY = "logquake-node"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "iptables", "iproute2", "fuse3", "libfuse3-3", "libfaketime",
                 "faketime", "openssh-server", "procps", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
WHEEL_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "logquake" / "wheels"


class DockerUnavailable(RuntimeError):
    """No Docker daemon answers; the message names DOCKER_HOST or the socket tried."""


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says which step failed and its output."""


def docker_client():
    """A docker SDK client, or DockerUnavailable naming where it looked for the daemon."""
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as e:
        raise DockerUnavailable(f"no Docker daemon answers at {where} (DOCKER_HOST={os.environ.get('DOCKER_HOST', 'unset')}): "
                                f"{_first_line(e)}; start dockerd or set DOCKER_HOST") from None
    return client


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _say(message: str) -> None:
    sys.stderr.write(f"[logquake docker] {message}\n")
    sys.stderr.flush()


def image_exists(client, tag: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


# --- the base image --------------------------------------------------------------------------


def debian_mirror(sources: list[Path] | None = None) -> str:
    """The Debian mirror this host's apt uses (first `deb`/`URIs:` of the main archive), else deb.debian.org."""
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("deb ") and not line.startswith("deb-src"):
                words = [w for w in line.split()[1:] if not w.startswith("[")]
                if words and "security" not in words[0] and words[0].startswith("http"):
                    return words[0].rstrip("/")
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if "security" not in uri and uri.startswith("http"):
                        return uri.rstrip("/")
    return DEFAULT_MIRROR


def build_base(client, force: bool = False, mirror: str | None = None, tag: str = BASE_IMAGE) -> str:
    """debootstrap a minimal bookworm with the node's packages and `docker import` it as `tag`."""
    if not force and image_exists(client, tag):
        _say(f"{tag} exists; nothing to do (--force rebuilds it)")
        return tag
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed (apt-get install debootstrap); it builds the base image")
    mirror = mirror or debian_mirror()
    root = Path(tempfile.mkdtemp(prefix="logquake-base-"))
    started = time.monotonic()
    try:
        _say(f"debootstrap --variant=minbase {SUITE} from {mirror} into {root} (about a minute)")
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root), mirror]
        _run_with_progress(command, "debootstrap")
        # apt lists and caches are not needed in the image and are a third of its size
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / sub).glob("*"):
                if item.is_file():
                    item.unlink()
        _say(f"debootstrap done in {time.monotonic() - started:.0f} s; docker import as {tag}")
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(["docker", "import", "--change", "CMD [\"/bin/bash\"]", "-", tag],
                                      stdin=tar.stdout, capture_output=True, text=True)
        finally:
            tar.stdout.close()
            tar.wait()
        if tar.returncode != 0 or imported.returncode != 0:
            raise ImageBuildError(f"docker import of {root} as {tag} failed (tar {tar.returncode}, docker import "
                                  f"{imported.returncode}): {imported.stderr.strip()}")
        _say(f"{tag} built in {time.monotonic() - started:.0f} s")
        return tag
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_with_progress(command: list[str], what: str) -> None:
    """Run command, echo a progress line every few seconds, raise with the last lines of output on failure."""
    lines: list[str] = []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last_said = time.monotonic()
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if time.monotonic() - last_said > 5:
            _say(f"{what}: {line.strip()[:100]}")
            last_said = time.monotonic()
    proc.wait()
    if proc.returncode != 0:
        tail = "\n".join(lines[-20:])
        raise ImageBuildError(f"{what} failed with exit status {proc.returncode}: {' '.join(command)}\n{tail}")


# --- the node image --------------------------------------------------------------------------


def _source_files(root: Path = PROJECT_ROOT) -> list[Path]:
    return [*source_files(root), root / "docker" / "Dockerfile"]


def source_hash(root: Path = PROJECT_ROOT) -> str:
    """A hash of everything that goes into the node image, so the tag changes exactly when the image must."""
    return digest_of(_source_files(root), root)[:16]


def node_image_tag(base: str = BASE_IMAGE, root: Path = PROJECT_ROOT) -> str:
    base_digest = hashlib.sha256(base.encode()).hexdigest()[:4]
    return f"{NODE_REPOSITORY}:{source_hash(root)}{base_digest}"


def _dependency_wheels(root: Path) -> Path:
    """Wheels of the project's dependencies, built once per pyproject.toml and cached in ~/.cache/logquake."""
    key = hashlib.sha256((root / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()[:16]
    out = WHEEL_CACHE / key
    if (out / ".complete").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    _say(f"pip wheel: the dependencies' wheels into {out} (once per pyproject.toml)")
    source = clean_copy(root)
    try:
        _run_with_progress([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out),
                            str(source)], "pip wheel (dependencies)")
    finally:
        shutil.rmtree(source, ignore_errors=True)
    for wheel in out.glob("logquake-*.whl"):
        wheel.unlink()  # the project's own wheel is rebuilt for every source hash
    (out / ".complete").write_text("")
    return out


def build_node(client, base: str = BASE_IMAGE, force: bool = False, root: Path = PROJECT_ROOT) -> str:
    """Build the node image from docker/Dockerfile on `base`; returns its tag (skips when it exists)."""
    tag = node_image_tag(base, root)
    if not force and image_exists(client, tag):
        return tag
    if base == BASE_IMAGE and not image_exists(client, base):
        raise ImageBuildError(f"the base image {base} is missing; build it with `logquake docker base`")
    started = time.monotonic()
    context = Path(tempfile.mkdtemp(prefix="logquake-context-"))
    source = None
    try:
        deps = _dependency_wheels(root)
        wheelhouse = context / "wheelhouse"
        wheelhouse.mkdir()
        for wheel in deps.glob("*.whl"):
            shutil.copyfile(wheel, wheelhouse / wheel.name)
        source = clean_copy(root)
        _run_with_progress([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(context / "project"), str(source)], "pip wheel (logquake)")
        shutil.copyfile(root / "docker" / "Dockerfile", context / "Dockerfile")
        _say(f"docker build {tag} on {base}")
        from docker.errors import BuildError, APIError

        try:
            client.images.build(path=str(context), tag=tag, buildargs={"BASE": base}, rm=True, forcerm=True,
                                labels={"org.logquake.source-hash": tag.split(":", 1)[1]})
        except BuildError as e:
            output = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in e.build_log)
            raise ImageBuildError(f"docker build of {tag} failed: {e}\n{output[-3000:]}") from None
        except APIError as e:
            raise ImageBuildError(f"docker build of {tag} failed: {_first_line(e)}") from None
        _say(f"{tag} built in {time.monotonic() - started:.0f} s")
        return tag
    finally:
        shutil.rmtree(context, ignore_errors=True)
        if source is not None:
            shutil.rmtree(source, ignore_errors=True)


def ensure_node_image(client, base: str = BASE_IMAGE) -> str:
    """Build the base image (ours only) and the node image when missing; returns the node image's tag."""
    if base == BASE_IMAGE and not image_exists(client, base):
        build_base(client)
    return build_node(client, base)


def remove_old_node_images(client, keep: str) -> list[str]:
    """Remove node images of earlier sources that no container uses; returns the removed tags and image ids."""
    from docker.errors import APIError

    removed = []
    for image in client.images.list(name=NODE_REPOSITORY):
        tags = [t for t in image.tags if t != keep]
        if keep in image.tags or not tags:
            continue
        for t in tags:
            try:
                client.images.remove(t)
                removed.append(t)
            except APIError:
                pass  # in use by a container of another run; it goes next time
    # images a rebuild untagged (same tag, newer sources), ours by their label
    pruned = client.images.prune(filters={"dangling": True, "label": "org.logquake.source-hash"})
    removed += [entry.get("Deleted", "") for entry in pruned.get("ImagesDeleted") or [] if entry.get("Deleted")]
    return removed


# --- the command line -------------------------------------------------------------------------


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="logquake docker",
                       description="Build the images the Docker backend runs.",
                       epilog="Exit status: 0 built or already there, 1 build failed or no Docker daemon, "
                              "254 bad arguments.")
    sub = p.add_subparsers(dest="action", required=True, metavar="{base,build}")
    base = sub.add_parser("base", help=f"debootstrap {SUITE} with python3 and the node's packages, docker import "
                                       f"as {BASE_IMAGE}")
    base.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    base.add_argument("--mirror", default=None, help="Debian mirror URL (default: the one apt uses here)")
    build = sub.add_parser("build", help="build the node image (logquake-node:<source hash>) from docker/Dockerfile")
    build.add_argument("--base", default=BASE_IMAGE,
                       help="base image (default %(default)s; python:3.11-slim where a registry is reachable)")
    build.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    build.add_argument("--prune", action="store_true", help="remove node images of older sources")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = docker_client()
        if args.action == "base":
            build_base(client, force=args.force, mirror=args.mirror)
        else:
            if args.base == BASE_IMAGE and not image_exists(client, BASE_IMAGE):
                build_base(client)
            tag = build_node(client, base=args.base, force=args.force)
            print(tag)
            # docker/compose.yml runs logquake-node:latest: the image of the sources built last
            client.images.get(tag).tag(NODE_REPOSITORY, "latest")
            if args.prune:
                for removed in remove_old_node_images(client, tag):
                    _say(f"removed {removed}")
    except (DockerUnavailable, ImageBuildError) as e:
        sys.stderr.write(f"logquake docker {args.action}: {e}\n")
        return EXIT_FAILED
    return EXIT_OK
