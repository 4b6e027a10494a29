"""The broker reaches clock, disk, network and randomness only through `broker.io` (DESIGN).

A simulated runtime can run the broker deterministically only if no module
outside `broker/io/` reads the wall clock, sleeps on the real event loop's
timer, opens a file, or draws from unseeded randomness. This walks every
module's syntax tree (not its text, so docstrings and names such as
`disk.open` or `runtime.random` do not count) and names each call that
escapes.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

BROKER = pathlib.Path(__file__).resolve().parents[2] / "broker"

# uuid1/uuid4 draw from the clock or the OS; uuid3/uuid5 hash their input and are fine.
_UUID_AMBIENT = {"uuid1", "uuid4"}
_DATETIME_NOW = {"now", "utcnow", "today"}


def escapes(source: str) -> list[tuple[int, str]]:
    """(line, what) for each use of an ambient source of time, files or randomness in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name in ("time", "secrets")]
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "secrets", "random", "asyncio", "uuid", "os"):
            bad = [a.name for a in node.names if (node.module, a.name) not in {("random", "Random")}
                   and (node.module not in ("asyncio", "uuid", "os") or a.name in ("sleep", "urandom") or a.name in _UUID_AMBIENT)]
            found += [(node.lineno, f"from {node.module} import {name}") for name in bad]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                found.append((node.lineno, "open()"))
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                module, name = func.value.id, func.attr
                if module == "time" or (module, name) in {("asyncio", "sleep"), ("os", "urandom"), ("os", "open")}:
                    found.append((node.lineno, f"{module}.{name}()"))
                elif module == "uuid" and name in _UUID_AMBIENT:
                    found.append((node.lineno, f"uuid.{name}()"))
                elif module == "random" and (name != "Random" or not (node.args or node.keywords)):
                    found.append((node.lineno, f"random.{name}({'' if name != 'Random' else 'no seed'})"))
                elif module in ("datetime", "date") and name in _DATETIME_NOW:
                    found.append((node.lineno, f"{module}.{name}()"))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "asyncio" and node.attr == "sleep":
            found.append((node.lineno, "asyncio.sleep"))  # also passed as a value, e.g. a default argument
    return sorted(set(found))


def broker_modules():
    return sorted(p for p in BROKER.rglob("*.py") if "io" not in p.relative_to(BROKER).parts[:1])


def test_no_broker_module_outside_io_reaches_the_clock_files_or_randomness_itself():
    offenders = []
    for path in broker_modules():
        for line, what in escapes(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(BROKER.parent)}:{line}: {what}")
    assert not offenders, "use the Runtime (broker.io) instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize("source, expected", [
    ("import time\ntime.monotonic()\n", [(1, "import time"), (2, "time.monotonic()")]),
    ("import asyncio\nasync def f():\n    await asyncio.sleep(1)\n", [(3, "asyncio.sleep"), (3, "asyncio.sleep()")]),
    ("def f(sleep=asyncio.sleep): pass\n", [(1, "asyncio.sleep")]),
    ("open('x')\n", [(1, "open()")]),
    ("import uuid\nuuid.uuid4()\n", [(2, "uuid.uuid4()")]),
    ("import random\nrandom.Random()\nrandom.random()\n", [(2, "random.Random(no seed)"), (3, "random.random()")]),
    ("from random import randint\n", [(1, "from random import randint")]),
    ("import datetime\ndatetime.now()\n", [(2, "datetime.now()")]),
])
def test_each_kind_of_escape_is_found(source, expected):
    assert escapes(source) == expected


@pytest.mark.parametrize("source", [
    "self.runtime.clock.sleep(1)\n",
    "disk.open(path, 'rb')\n",
    "import random\nrandom.Random(seed)\n",
    "import uuid\nuuid.UUID(int=rng.getrandbits(128), version=4)\n",
    "'''time.time() in a docstring'''\n",
    "from random import Random\n",
])
def test_runtime_calls_and_seeded_randomness_pass(source):
    assert escapes(source) == []
