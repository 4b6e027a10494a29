"""Small atomically replaced state files (topic metadata, the producer id block).

A file is replaced by writing `<name>.tmp`, fsyncing it, renaming it over
`<name>` and fsyncing the directory, so after a crash the file holds either the
old or the new contents, never a mix (the classic write-rename protocol; see
Pillai et al., "All File Systems Are Not Created Equal", OSDI 2014).

Thread-safety: none; the broker's event loop is the only caller.
"""

from __future__ import annotations

import json

from broker.io import Disk


def write_atomically(disk: Disk, directory: str, name: str, data: bytes) -> None:
    path = f"{directory}/{name}"
    temp_path = path + ".tmp"
    handle = disk.open(temp_path, "wb")
    try:
        try:
            handle.write(data)
            handle.fsync()
        finally:
            handle.close()
    except OSError:
        disk.remove(temp_path)  # a full disk: the old file stays as it was, and no torn temporary file is left
        raise
    disk.rename(temp_path, path)
    disk.fsync_dir(directory)


def read_file(disk: Disk, path: str) -> bytes | None:
    if not disk.exists(path):
        return None
    handle = disk.open(path, "rb")
    try:
        return handle.read()
    finally:
        handle.close()


def write_json(disk: Disk, directory: str, name: str, value) -> None:
    write_atomically(disk, directory, name, json.dumps(value, indent=1, sort_keys=True).encode("utf-8"))


def read_json(disk: Disk, directory: str, name: str):
    raw = read_file(disk, f"{directory}/{name}")
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"state file {directory}/{name} is not valid JSON ({exc}); it was written atomically, so this is disk damage") from None
