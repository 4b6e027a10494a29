"""The controller's side of AlterUserScramCredentials (KIP-554): decide on the committed image, commit the records.

`ScramControl` adds the `alter_user_scram_credentials` operation to a
`QuorumController` (so it runs, like every operation, one at a time on the
active controller once its log is applied). The request carries StoredKey and
ServerKey already derived by the receiving broker (broker.metadata.scram), never
a password or salted password. Before the log's SCRAM bootstrap, the users of
this node's `logquake.sasl.users.file` (read at that moment, `bootstrap`) are
the current credentials and are written with the first change.

Thread-safety: none; runs on the broker's event loop.
"""

from __future__ import annotations

import logging
from typing import Callable

from broker.metadata.scram import Credentials, alter_records, decode_items

log = logging.getLogger("broker.controller")

OPERATION = "alter_user_scram_credentials"


class ScramControl:
    def __init__(self, controller, quorum, bootstrap: Callable[[], Credentials | None]):
        self.quorum = quorum
        self.bootstrap = bootstrap
        controller.handlers[OPERATION] = self.alter

    async def alter(self, request: dict) -> dict:
        deletions, upsertions = decode_items(request)
        image = self.quorum.image
        bootstrap = None if image.scram_bootstrapped else self.bootstrap()
        results, records = alter_records(image.scram_credentials, image.scram_bootstrapped, bootstrap, deletions, upsertions)
        offset = image.offset
        if records:
            offset = await self.quorum.propose(records)
            log.info("SCRAM credentials altered for %s", ", ".join(name for name, code, _ in results if code == 0))
        return {"results": [{"name": name, "error_code": code, "error_message": message}
                            for name, code, message in results], "metadata_offset": offset}
