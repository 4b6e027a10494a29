"""A single node's metadata records in one JSON state file, replaced atomically (broker.io.persist).

A single node has no metadata log. The parts of its metadata that it keeps as
records (the SCRAM credentials, broker.server.scram_admin; the ACLs,
broker.server.acl_admin) are written as the records that rebuild them,
`{"records": [<record as JSON>, ...]}`, each record the JSON object of its
encoding (broker.metadata.records), in a file of the first log directory.
A directory of None keeps nothing (a node in memory only).

Thread-safety: none; the broker's event loop is the only caller.
"""

from __future__ import annotations

import json
from typing import Iterable

from broker.io.persist import read_json, write_json
from broker.metadata.image import MetadataImage
from broker.metadata.records import RECORD_VERSION, MetadataRecord, decode_record


def read_image(disk, directory: str | None, name: str) -> MetadataImage:
    """The image the file's records build (an empty image without the file or a directory)."""
    if directory is None:
        return MetadataImage()
    state = read_json(disk, directory, name)
    records = [decode_record(bytes([RECORD_VERSION]) + json.dumps(item).encode("utf-8"))
               for item in (state or {}).get("records", [])]
    return MetadataImage().apply_all(records, 0)


def write_records(disk, directory: str | None, name: str, records: Iterable[MetadataRecord]) -> None:
    """Replace the file with `records` (nothing without a directory); OSError when it cannot be written."""
    if directory is not None:
        write_json(disk, directory, name, {"records": [json.loads(record.encode()[1:]) for record in records]})
