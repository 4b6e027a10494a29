"""SCRAM credentials as the metadata log holds them, and the rules of AlterUserScramCredentials.

A credential is what RFC 5802 (section 3) lets a server keep instead of the
password: the salt, the PBKDF2 iteration count, StoredKey = H(ClientKey) and
ServerKey = HMAC(SaltedPassword, "Server Key"), with ClientKey =
HMAC(SaltedPassword, "Client Key"); SCRAM-SHA-256 and SCRAM-SHA-512 use SHA-256
and SHA-512 (RFC 7677, Kafka's KIP-84). KIP-554's AlterUserScramCredentials
carries the client-computed SaltedPassword, never the password; the broker
that receives it turns it into StoredKey and ServerKey (`from_salted_password`)
before anything else sees it, so only the keys reach the controller and the
log (KRaft's UserScramCredentialRecord holds the same four values).

`alter_decision` is the controller's decision (KRaft's ScramControlManager),
a pure function of the current credentials: per user one result, in the order
users first appear; a user named twice in one request (in deletions or
upsertions, whatever the mechanism) is DUPLICATE_RESOURCE; an empty user name
or too few or too many iterations (4096..16384, Kafka's bounds for both
mechanisms) is UNACCEPTABLE_CREDENTIAL; an unknown mechanism is
UNSUPPORTED_SASL_MECHANISM; deleting a credential that does not exist is
RESOURCE_NOT_FOUND. Only the users without an error are changed.
`describe_results` is KIP-554's describe: no names (null or empty) lists every
user; a name asked twice is DUPLICATE_RESOURCE, an unknown one
RESOURCE_NOT_FOUND.

Bootstrap: until the first AlterUserScramCredentials, the users of
`logquake.sasl.users.file` authenticate (read by each node); the first change
writes the users of the deciding node's file into the log with it, plus a
`ScramBootstrapRecord`, and from then on only the log's credentials count (as
Kafka's `kafka-storage format --add-scram` writes bootstrap credentials once).

Thread-safety: immutable values and pure functions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Mapping

from broker.metadata.records import RemoveUserScramCredentialRecord, ScramBootstrapRecord, UserScramCredentialRecord

# KIP-554's mechanism numbers (org.apache.kafka.clients.admin.ScramMechanism)
MECHANISM_IDS = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
MECHANISM_NAMES = {number: name for name, number in MECHANISM_IDS.items()}
HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096  # RFC 7677 section 4 asks for at least 4096; Kafka's ScramMechanism.minIterations
MAX_ITERATIONS = 16384  # Kafka's ScramMechanism.maxIterations

NONE = 0
RESOURCE_NOT_FOUND = 91
DUPLICATE_RESOURCE = 92
UNACCEPTABLE_CREDENTIAL = 93
UNSUPPORTED_SASL_MECHANISM = 33


@dataclass(frozen=True)
class ScramCredential:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def from_salted_password(mechanism: str, salted: bytes, salt: bytes, iterations: int) -> ScramCredential:
    """RFC 5802 section 3: StoredKey and ServerKey from SaltedPassword."""
    name = HASHES[mechanism]
    client_key = hmac.new(salted, b"Client Key", name).digest()
    return ScramCredential(salt, iterations, hashlib.new(name, client_key).digest(),
                           hmac.new(salted, b"Server Key", name).digest())


def scram_credential(mechanism: str, password: str, salt: bytes, iterations: int) -> ScramCredential:
    """SaltedPassword = Hi(password, salt, i) (PBKDF2-HMAC, RFC 5802 section 2.2), then its keys."""
    salted = hashlib.pbkdf2_hmac(HASHES[mechanism], password.encode("utf-8"), salt, iterations)
    return from_salted_password(mechanism, salted, salt, iterations)


@dataclass(frozen=True)
class Upsertion:
    """One upsertion as it reaches the controller: keys already derived (None when the mechanism is unknown)."""

    name: str
    mechanism: int
    iterations: int
    credential: ScramCredential | None


@dataclass(frozen=True)
class Deletion:
    name: str
    mechanism: int


Credentials = Mapping[str, Mapping[str, ScramCredential]]  # mechanism name -> user -> credential


def alter_decision(current: Credentials, deletions: list[Deletion], upsertions: list[Upsertion]):
    """Per user (name, error code, message), in first-appearance order, and the changes to make.

    A change is ("upsert", mechanism name, user, credential) or ("delete", mechanism name, user).
    """
    order: list[str] = []
    errors: dict[str, tuple[int, str]] = {}
    changes: dict[str, tuple] = {}

    def fail(name: str, code: int, message: str) -> None:
        changes.pop(name, None)
        errors[name] = (code, message)

    for item in [*deletions, *upsertions]:
        name = item.name
        if name not in order:
            order.append(name)
        if name in errors:
            continue
        if name in changes:
            fail(name, DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request")
            continue
        mechanism = MECHANISM_NAMES.get(item.mechanism)
        if not name:
            fail(name, UNACCEPTABLE_CREDENTIAL, "Username must not be empty")
        elif mechanism is None:
            fail(name, UNSUPPORTED_SASL_MECHANISM, f"Unknown SCRAM mechanism {item.mechanism}; accepted: "
                 + ", ".join(f"{number} ({text})" for number, text in sorted(MECHANISM_NAMES.items())))
        elif isinstance(item, Deletion):
            if name not in current.get(mechanism, {}):
                fail(name, RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist")
            else:
                changes[name] = ("delete", mechanism, name)
        elif item.iterations < MIN_ITERATIONS:
            fail(name, UNACCEPTABLE_CREDENTIAL, f"Too few iterations: {item.iterations} (at least {MIN_ITERATIONS})")
        elif item.iterations > MAX_ITERATIONS:
            fail(name, UNACCEPTABLE_CREDENTIAL, f"Too many iterations: {item.iterations} (at most {MAX_ITERATIONS})")
        elif item.credential is None or not item.credential.salt:
            fail(name, UNACCEPTABLE_CREDENTIAL, "The salt and the salted password must not be empty")
        else:
            changes[name] = ("upsert", mechanism, name, item.credential)
    results = [(name, *errors.get(name, (NONE, None))) for name in order]
    return results, [changes[name] for name in order if name in changes]


def describe_results(current: Credentials, names: list[str] | None):
    """Per user (name, error code, message, ((mechanism id, iterations), ...)) (KIP-554's describe)."""
    users = sorted({user for by_user in current.values() for user in by_user})
    if not names:
        names = users
    results = []
    asked: set[str] = set()
    for name in names:
        if name in asked:
            results = [r for r in results if r[0] != name]
            results.append((name, DUPLICATE_RESOURCE, "Cannot describe SCRAM credentials for the same user twice in a single request", ()))
            continue
        asked.add(name)
        infos = tuple((MECHANISM_IDS[mechanism], by_user[name].iterations)
                      for mechanism, by_user in sorted(current.items()) if name in by_user)
        if not infos:
            results.append((name, RESOURCE_NOT_FOUND, "Attempt to describe a user credential that does not exist", ()))
        else:
            results.append((name, NONE, None, infos))
    return results


def alter_records(credentials: Credentials, bootstrapped: bool, bootstrap: Credentials | None,
                  deletions: list[Deletion], upsertions: list[Upsertion]):
    """`alter_decision` against the effective credentials, and the metadata records that carry it out.

    Before the bootstrap (`bootstrapped` False) the current credentials are `bootstrap` (the deciding node's
    users file); a change then writes them first, with a ScramBootstrapRecord, so the log holds every user.
    """
    current = credentials if bootstrapped else (bootstrap or {})
    results, changes = alter_decision(current, deletions, upsertions)
    records = []
    if changes and not bootstrapped:
        records += credential_records(current)
    for change in changes:
        if change[0] == "delete":
            records.append(RemoveUserScramCredentialRecord(change[2], MECHANISM_IDS[change[1]]))
        else:
            credential = change[3]
            records.append(UserScramCredentialRecord(change[2], MECHANISM_IDS[change[1]], credential.salt,
                                                     credential.stored_key, credential.server_key, credential.iterations))
    return results, records


def credential_records(credentials: Credentials) -> list:
    """Every credential of `credentials` as records, then the bootstrap marker (a bootstrap, or a state snapshot)."""
    records: list = [UserScramCredentialRecord(user, MECHANISM_IDS[mechanism], c.salt, c.stored_key, c.server_key, c.iterations)
                     for mechanism, by_user in sorted(credentials.items()) for user, c in sorted(by_user.items())]
    return records + [ScramBootstrapRecord(len({user for by_user in credentials.values() for user in by_user}))]


def encode_items(deletions: list[Deletion], upsertions: list[Upsertion]) -> dict:
    """The JSON form of an alteration for the controller RPC (keys as base64; no salted password travels)."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return {
        "deletions": [{"name": d.name, "mechanism": d.mechanism} for d in deletions],
        "upsertions": [{"name": u.name, "mechanism": u.mechanism, "iterations": u.iterations,
                        "credential": None if u.credential is None else
                        {"salt": b64(u.credential.salt), "stored_key": b64(u.credential.stored_key),
                         "server_key": b64(u.credential.server_key)}} for u in upsertions],
    }


def decode_items(request: dict) -> tuple[list[Deletion], list[Upsertion]]:
    """`encode_items` reversed; KeyError, TypeError or ValueError (binascii.Error) on a malformed request."""
    def raw(text) -> bytes:
        return base64.b64decode(str(text), validate=True)

    deletions = [Deletion(str(d["name"]), int(d["mechanism"])) for d in request["deletions"]]
    upsertions = []
    for u in request["upsertions"]:
        c = u["credential"]
        credential = None if c is None else ScramCredential(raw(c["salt"]), int(u["iterations"]), raw(c["stored_key"]),
                                                            raw(c["server_key"]))
        upsertions.append(Upsertion(str(u["name"]), int(u["mechanism"]), int(u["iterations"]), credential))
    return deletions, upsertions
