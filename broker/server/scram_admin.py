"""AlterUserScramCredentials (API key 51) and DescribeUserScramCredentials (API key 50), KIP-554.

The credentials live where the node's metadata lives:
- on a cluster node, in the metadata log (`ClusterScramStore`): Alter is
  forwarded to the active controller (broker.controller.scram), which commits
  UserScramCredentialRecord / RemoveUserScramCredentialRecord; the answer waits
  until this node applied them, and every node's image (so every node's SASL
  authentication) has them once it applied that offset: no restart;
- on a single node, in `__logquake_scram.json` in the first log directory
  (`LocalScramStore`), the same records replaced atomically (broker.io.persist),
  as the single node keeps its topic table.

The receiving broker derives StoredKey and ServerKey from the client's
SaltedPassword at once (RFC 5802 section 3, RFC 7677); the salted password is
neither forwarded, stored nor logged. The rules and error codes are Kafka's
(broker.metadata.scram): RESOURCE_NOT_FOUND, DUPLICATE_RESOURCE,
UNACCEPTABLE_CREDENTIAL, UNSUPPORTED_SASL_MECHANISM; a controller that cannot be
reached answers REQUEST_TIMED_OUT (or its own error) for every user.

`ScramCredentialSource` is what SASL authentication asks (`lookup`): the
store's credentials once bootstrapped, else the users file
(`logquake.sasl.users.file`, the bootstrap source).

Thread-safety: none; the broker's event loop is the only caller.
"""

from __future__ import annotations

import logging

from kio.schema.errors import ErrorCode

from broker.controller.scram import OPERATION, ScramControl
from broker.metadata.errors import ControllerError
from broker.metadata.records_file import read_image, write_records
from broker.metadata.scram import (
    MECHANISM_NAMES,
    Deletion,
    Upsertion,
    alter_records,
    credential_records,
    describe_results,
    encode_items,
    from_salted_password,
)
from broker.protocol import apis
from broker.server.sasl import SaslConfigError, check_plain, load_credentials

log = logging.getLogger("broker.server")

DESCRIBE_USER_SCRAM_CREDENTIALS = apis.DESCRIBE_USER_SCRAM_CREDENTIALS
ALTER_USER_SCRAM_CREDENTIALS = apis.ALTER_USER_SCRAM_CREDENTIALS
STATE_FILE = "__logquake_scram.json"


class ScramCredentialSource:
    """The credentials SASL checks: the store's once bootstrapped, else the users file's (`file`, set at start)."""

    def __init__(self, store, config, runtime):
        self.store = store
        self.config = config
        self.runtime = runtime
        self.file = None  # broker.server.sasl.Credentials of the users file, loaded by the server at start

    def file_credentials(self):
        """The users file's credentials (loaded now if the server did not: a node without SASL listeners), or None."""
        if self.file is None and self.config.value("logquake.sasl.users.file"):
            try:
                self.file = load_credentials(self.config, self.runtime)
            except SaslConfigError as exc:  # the first change must not drop the file's users: refuse it instead
                raise ControllerError(f"the users file cannot bootstrap the SCRAM credentials: {exc}") from None
        return None if self.file is None else self.file.scram

    def effective(self):
        credentials, bootstrapped = self.store.state()
        if bootstrapped:
            return credentials
        return {} if self.file is None else self.file.scram

    def lookup(self, mechanism: str, name: str):
        return self.effective().get(mechanism, {}).get(name)

    def check_plain(self, name: str, password: str) -> bool:
        return check_plain(self, name, password)


class ClusterScramStore:
    """The metadata log's credentials (the node's image); changes go through the active controller."""

    def __init__(self, cluster, bootstrap):
        self.cluster = cluster
        ScramControl(cluster.controller, cluster.quorum, bootstrap)

    def state(self):
        image = self.cluster.quorum.image
        return image.scram_credentials, image.scram_bootstrapped

    async def alter(self, deletions, upsertions):
        answer = await self.cluster.channel.call({"op": OPERATION, **encode_items(deletions, upsertions)})
        if answer.get("error_code"):
            raise ControllerError(answer.get("error_message") or "the controller refused", answer["error_code"])
        if not await self.cluster.wait_applied(answer["metadata_offset"]):
            log.warning("SCRAM credentials committed at metadata offset %d are not applied here yet", answer["metadata_offset"])
        return [(r["name"], r["error_code"], r["error_message"]) for r in answer["results"]]


class LocalScramStore:
    """A single node's credentials: the same records in one atomically replaced file (None directory: memory)."""

    def __init__(self, runtime, directory: str | None, bootstrap):
        self.runtime = runtime
        self.directory = directory
        self.bootstrap = bootstrap
        self.image = read_image(runtime.disk, directory, STATE_FILE)  # only its SCRAM part is used

    def state(self):
        return self.image.scram_credentials, self.image.scram_bootstrapped

    async def alter(self, deletions, upsertions):
        image = self.image
        bootstrap = None if image.scram_bootstrapped else self.bootstrap()
        results, records = alter_records(image.scram_credentials, image.scram_bootstrapped, bootstrap, deletions, upsertions)
        if records:
            new = image.apply_all(records, 0)
            write_records(self.runtime.disk, self.directory, STATE_FILE, credential_records(new.scram_credentials))
            self.image = new
            log.info("SCRAM credentials altered for %s", ", ".join(name for name, code, _ in results if code == 0))
        return results


class ScramAdminApis:
    """The two KIP-554 APIs over a store (`ClusterScramStore` or `LocalScramStore`)."""

    def __init__(self, source: ScramCredentialSource):
        self.source = source

    def apis(self) -> dict:
        return {DESCRIBE_USER_SCRAM_CREDENTIALS: self.describe, ALTER_USER_SCRAM_CREDENTIALS: self.alter}

    def describe(self, header, request):
        module = apis.response_module(DESCRIBE_USER_SCRAM_CREDENTIALS, header.api_version)
        build = apis.build_entity
        names = None if request.users is None else [user.name for user in request.users]
        results = tuple(
            build(module, "DescribeUserScramCredentialsResult", user=name, error_code=ErrorCode(code), error_message=message,
                  credential_infos=tuple(build(module, "CredentialInfo", mechanism=m, iterations=i) for m, i in infos))
            for name, code, message, infos in describe_results(self.source.effective(), names))
        return build(module, "DescribeUserScramCredentialsResponse", throttle_time=apis.ZERO_MS, error_code=ErrorCode.none,
                     error_message=None, results=results)

    async def alter(self, header, request):
        module = apis.response_module(ALTER_USER_SCRAM_CREDENTIALS, header.api_version)
        deletions = [Deletion(d.name, d.mechanism) for d in request.deletions]
        upsertions = []
        for u in request.upsertions:
            mechanism = MECHANISM_NAMES.get(u.mechanism)
            salted, salt = bytes(u.salted_password), bytes(u.salt)
            credential = None if mechanism is None or not salted or not salt else \
                from_salted_password(mechanism, salted, salt, u.iterations)
            upsertions.append(Upsertion(u.name, u.mechanism, u.iterations, credential))
        try:
            results = await self.source.store.alter(deletions, upsertions)
        except ControllerError as exc:
            log.warning("AlterUserScramCredentials failed: %s", exc)
            results = _every_user(deletions, upsertions, exc.error_code, str(exc))
        except OSError as exc:  # a single node's state file cannot be written (full disk): nothing changed
            log.warning("AlterUserScramCredentials failed: %s cannot be written: %s", STATE_FILE, exc)
            results = _every_user(deletions, upsertions, ErrorCode.unknown_server_error.value,
                                  f"the credentials cannot be stored: {exc.strerror or exc}")
        for name, code, message in results:
            if code:
                log.info("AlterUserScramCredentials for user %r refused: %s (%s)", name, ErrorCode(code).name, message)
        return apis.build_entity(module, "AlterUserScramCredentialsResponse", throttle_time=apis.ZERO_MS, results=tuple(
            apis.build_entity(module, "AlterUserScramCredentialsResult", user=name, error_code=ErrorCode(code),
                              error_message=message) for name, code, message in results))


def _every_user(deletions, upsertions, code: int, message: str):
    names = list(dict.fromkeys(item.name for item in [*deletions, *upsertions]))
    return [(name, code, message) for name in names]


def scram_admin(handlers, cluster) -> ScramAdminApis:
    """The APIs and credential source of a node: on the metadata log in a cluster, else on the node's state file."""
    source = ScramCredentialSource(None, handlers.config, handlers.runtime)
    if cluster is not None:
        source.store = ClusterScramStore(cluster, source.file_credentials)
    else:
        source.store = LocalScramStore(handlers.runtime, handlers.topics.directory, source.file_credentials)
    return ScramAdminApis(source)
