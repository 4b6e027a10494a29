"""The repository is whole: no product, test or doc file names a path outside it.

A fresh clone has nothing beside it (no shared folder next to the clone, no
development machine's folders), so a file that reads one fails for every new user. The scan covers
every file git tracks (and untracked ones not ignored) except the recorded test
histories under tests/data/, whose text is data.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness.wheelhouse import product_packages

ROOT = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".sh", ".txt", ".yml", ".yaml", ".json", ".html", ".css", ""}

# built from pieces so that this file does not match itself
OUTSIDE = [
    re.compile(r"\.\./" + "shared"),
    re.compile(r"""["'`(\s]/(?:""" + "work|home|Users" + r")/"),
    re.compile(r"\]\(\.\./"),  # a Markdown link that leaves the repository
]
PARENTS = re.compile(r"__file__\)\.resolve\(\)\.parents\[(\d+)\]")


def repository_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    files = []
    for name in listed:
        path = ROOT / name
        if not name or name.startswith("tests/data/") or not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        files.append(path)
    return files


def outside_references(path: Path) -> list[str]:
    rel = path.relative_to(ROOT)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern in OUTSIDE:
            if pattern.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
        for match in PARENTS.finditer(line):
            # parents[len(parts) - 1] of a file is the repository's root; anything above leaves it
            if int(match.group(1)) >= len(rel.parts):
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_no_file_names_a_path_outside_the_repository():
    files = repository_files()
    assert len(files) > 100, "the scan found almost no files: is this a git checkout?"
    found = [ref for path in files for ref in outside_references(path)]
    assert not found, "files that name paths outside the repository:\n" + "\n".join(found)


def test_the_scan_catches_what_it_looks_for(tmp_path):
    # the patterns themselves, on lines a careless change would add
    bad = ROOT / "tests" / "_scan_probe.py"
    up, slash = "..", "/"
    lines = ['DATA = Path("' + slash + 'work/shared/data")', "see " + up + slash + "shared/DESIGN.md",
             "ROOT = Path(__file__).resolve().parents" + "[2]", "[design](" + up + slash + "DESIGN.md)",
             "ROOT = Path(__file__).resolve().parents" + "[1]"]  # the last one is the root: fine
    bad.write_text("\n".join(lines) + "\n")
    try:
        assert len(outside_references(bad)) == 4
    finally:
        bad.unlink()


def test_the_documents_a_contributor_needs_are_here():
    for name in ("docs/DESIGN.md", "docs/STYLE.md", "tests/data/histories/README.md",
                 "tests/data/histories/manifest.json"):
        assert (ROOT / name).is_file(), name


PRODUCT = (*product_packages(ROOT), "bench")


def test_nothing_in_the_product_is_named_like_a_test():
    # pytest collects test_* files and Test* classes, and warns about product names that look like them
    found = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if path.name.startswith("test_"):
                found.append(f"{rel}: a module named test_*")
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.match(r"\s*(class Test|def test_)", line):
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert not found, "product names that look like tests:\n" + "\n".join(found)
