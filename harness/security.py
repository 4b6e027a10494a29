"""A secured client listener for a test cluster: `--security tls|sasl-scram|sasl-scram-tls` (issue 20).

`ClusterSecurity.create(mode, directory)` makes the secrets of one cluster in a
private directory (mode 0700, files 0600): for TLS a throwaway CA, the broker
keystore and a client certificate (`harness.tls`); for SASL one user
(`logquake`) with a random password (`secrets.token_urlsafe`) in the broker's
users file (`logquake.sasl.users.file`). `broker_properties()` secures the
nodes' CLIENT listener (SSL, SASL_PLAINTEXT or SASL_SSL; SCRAM-SHA-512 only);
INTERNAL stays PLAINTEXT, since brokers and controllers talk plaintext to each
other. `client()` is what a client needs (`workloads.client_security.ClientSecurity`),
`describe()` the part that is not secret (mode, protocol, mechanism, user name),
the only part a run may store. `remove()` deletes the directory; the owner calls
it at exit, Ctrl-C included.

Invariant: the password and private keys exist only in that directory and in
memory; nothing here logs or returns them except `client()` and `password`.

Thread-safety: build and remove from one thread; the object is read-only between.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.tls import TlsFiles, make_tls_files
from workloads.client_security import ClientSecurity

__all__ = ["MECHANISM", "MODES", "USER", "ClusterSecurity", "check_mode", "describe_mode"]

# mode -> the CLIENT listener's security protocol
MODES = {"tls": "SSL", "sasl-scram": "SASL_PLAINTEXT", "sasl-scram-tls": "SASL_SSL"}
MECHANISM = "SCRAM-SHA-512"
USER = "logquake"
SECRETS_DIRECTORY = "secrets"


def check_mode(mode: str, flag: str = "--security") -> str:
    """`mode` if it is one of MODES or "none"; ValueError naming the flag, the value and the accepted ones."""
    if mode != "none" and mode not in MODES:
        raise ValueError(f"{flag} {mode!r} is not known; expected none, {', '.join(MODES)}")
    return mode


def describe_mode(mode: str) -> dict[str, Any] | None:
    """The non-secret settings of `mode` (None for "none"): what test.json holds, known before any secret exists."""
    if check_mode(mode) == "none":
        return None
    described: dict[str, Any] = {"mode": mode, "security.protocol": MODES[mode]}
    if MODES[mode].startswith("SASL_"):
        described.update({"sasl.mechanism": MECHANISM, "sasl.username": USER})
    return described


@dataclass
class ClusterSecurity:
    mode: str
    directory: Path
    tls: TlsFiles | None = None
    users_file: Path | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def create(cls, mode: str, directory: Path, hosts=("localhost", "127.0.0.1")) -> ClusterSecurity:
        """Fresh secrets for `mode` in `directory` (created with mode 0700; it must not exist yet)."""
        check_mode(mode)
        assert mode != "none"
        directory = Path(directory)
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # whatever the umask
        security = cls(mode, directory)
        try:
            if MODES[mode] in ("SSL", "SASL_SSL"):
                security.tls = make_tls_files(str(directory), hosts=tuple(hosts))
            if MODES[mode].startswith("SASL_"):
                security.password = secrets.token_urlsafe(24)
                security.users_file = directory / "users"
                descriptor = os.open(security.users_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(f"{USER}:{security.password}\n")
        except BaseException:
            security.remove()
            raise
        return security

    @property
    def protocol(self) -> str:
        return MODES[self.mode]

    def broker_properties(self) -> dict[str, str]:
        """The properties that secure the CLIENT listener of a node with listeners CLIENT and INTERNAL."""
        properties = {"listener.security.protocol.map": f"CLIENT:{self.protocol},INTERNAL:PLAINTEXT"}
        if self.tls is not None:
            properties["ssl.keystore.location"] = self.tls.broker_keystore
        if self.users_file is not None:
            properties["sasl.enabled.mechanisms"] = MECHANISM
            properties["logquake.sasl.users.file"] = str(self.users_file)
        return properties

    def client(self) -> ClientSecurity:
        sasl = self.users_file is not None
        return ClientSecurity(self.protocol, ca_location=self.tls.ca if self.tls else None,
                              mechanism=MECHANISM if sasl else None, username=USER if sasl else None,
                              password=self.password)

    def describe(self) -> dict[str, Any]:
        """What a run may store: no password, no key, no path into the secrets directory."""
        described = describe_mode(self.mode)
        assert described == {"mode": self.mode, **self.client().describe()}
        return described

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
