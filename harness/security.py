"""A secured client listener for a test cluster: `--security tls|sasl-scram|sasl-scram-tls` (issue 20).

`ClusterSecurity.create(mode, directory)` makes the secrets of one cluster in a
private directory (mode 0700, files 0600): for TLS a throwaway CA, the broker
keystore and a client certificate (`harness.tls`); for SASL two users with
random passwords (`secrets.token_urlsafe`) in the broker's users file
(`logquake.sasl.users.file`): the workload's user `logquake` and the harness's
own `logquake-admin`. `broker_properties()` secures the nodes' CLIENT listener
(SSL, SASL_PLAINTEXT or SASL_SSL; SCRAM-SHA-512 only); INTERNAL stays
PLAINTEXT, since brokers and controllers talk plaintext to each other. With
`authorizer=True` (a test run in a SASL mode) the nodes enforce ACLs, with
`logquake-admin` the one super user: the harness creates topics and ACLs as it
(`admin_client()`), and the workload runs as `logquake` with the ACLs it
declares (`workloads.core.Workload.acls`, granted by `harness.acls`).
`client()` is what the workload's clients need
(`workloads.client_security.ClientSecurity`), `describe()` the part that is not
secret (mode, protocol, mechanism, user names), the only part a run may store.
`remove()` deletes the directory; the owner calls it at exit, Ctrl-C included.

A `--system` broker (`harness.system`, its description's [security] table) may
take SCRAM-SHA-256 or PLAIN instead (`mechanism`) and may have no authorizer
(`acls=False`: `enforces_acls` is then false and no super user is described);
its templates get `template_values()` (paths into the directory, never a
secret) and only its [files] texts `template_secrets()` (the passwords).

Invariant: the passwords and private keys exist only in that directory and in
memory; nothing here logs or returns them except `client()`, `admin_client()`,
`password` and `admin_password`.

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

__all__ = ["ADMIN_USER", "AUTHORIZER", "MECHANISM", "MECHANISMS", "MODES", "SECRET_PLACEHOLDERS", "TEMPLATE_PLACEHOLDERS",
           "USER", "ClusterSecurity", "check_mode", "describe_mode", "template_secrets", "template_values", "uses_sasl"]

# mode -> the CLIENT listener's security protocol
MODES = {"tls": "SSL", "sasl-scram": "SASL_PLAINTEXT", "sasl-scram-tls": "SASL_SSL"}
MECHANISM = "SCRAM-SHA-512"  # ours; a --system description may name another of MECHANISMS
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
USER = "logquake"  # the workload's user: only the ACLs its workload declares
ADMIN_USER = "logquake-admin"  # the harness's own user, the clusters' one super user
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SECRETS_DIRECTORY = "secrets"


def check_mode(mode: str, flag: str = "--security") -> str:
    """`mode` if it is one of MODES or "none"; ValueError naming the flag, the value and the accepted ones."""
    if mode != "none" and mode not in MODES:
        raise ValueError(f"{flag} {mode!r} is not known; expected none, {', '.join(MODES)}")
    return mode


def uses_sasl(mode: str) -> bool:
    """Whether `mode` authenticates users (SASL): the modes in which a test run's brokers enforce ACLs."""
    return check_mode(mode) != "none" and MODES[mode].startswith("SASL_")


def describe_mode(mode: str, mechanism: str = MECHANISM, acls: bool = True) -> dict[str, Any] | None:
    """The non-secret settings of `mode` (None for "none"): what test.json holds, known before any secret exists.
    `sasl.username` is the workload's user; `super.users` the harness's own (only brokers that enforce ACLs, as a
    test run's do unless a --system description says its broker has no authorizer, have one)."""
    if check_mode(mode) == "none":
        return None
    described: dict[str, Any] = {"mode": mode, "security.protocol": MODES[mode]}
    if uses_sasl(mode):
        described.update({"sasl.mechanism": mechanism, "sasl.username": USER})
        if acls:
            described["super.users"] = f"User:{ADMIN_USER}"
    return described


@dataclass
class ClusterSecurity:
    mode: str
    directory: Path
    tls: TlsFiles | None = None
    users_file: Path | None = None
    password: str | None = field(default=None, repr=False)  # USER's
    admin_password: str | None = field(default=None, repr=False)  # ADMIN_USER's
    mechanism: str = MECHANISM  # the SASL mechanism the clients use
    acls: bool = True  # whether the brokers enforce ACLs where there are users (a --system may have no authorizer)

    @classmethod
    def create(cls, mode: str, directory: Path, hosts=("localhost", "127.0.0.1"), mechanism: str = MECHANISM,
               acls: bool = True) -> ClusterSecurity:
        """Fresh secrets for `mode` in `directory` (created with mode 0700; it must not exist yet); `mechanism` and
        `acls` are what the brokers take (ours: SCRAM-SHA-512 with ACLs)."""
        check_mode(mode)
        assert mode != "none" and mechanism in MECHANISMS, (mode, mechanism)
        directory = Path(directory)
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # whatever the umask
        security = cls(mode, directory, mechanism=mechanism, acls=acls)
        try:
            if MODES[mode] in ("SSL", "SASL_SSL"):
                security.tls = make_tls_files(str(directory), hosts=tuple(hosts))
            if uses_sasl(mode):
                security.password = secrets.token_urlsafe(24)
                security.admin_password = secrets.token_urlsafe(24)
                security.users_file = directory / "users"
                descriptor = os.open(security.users_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(f"{USER}:{security.password}\n{ADMIN_USER}:{security.admin_password}\n")
        except BaseException:
            security.remove()
            raise
        return security

    @property
    def protocol(self) -> str:
        return MODES[self.mode]

    @property
    def enforces_acls(self) -> bool:
        """Whether the nodes enforce ACLs: `broker_properties(authorizer=True)` gives ours an authorizer (SASL modes
        only); a --system broker has one where its description says so (`acls`)."""
        return self.users_file is not None and self.acls

    def broker_properties(self, authorizer: bool = False) -> dict[str, str]:
        """The properties that secure the CLIENT listener of a node with listeners CLIENT and INTERNAL; with
        `authorizer` in a SASL mode the node also enforces ACLs, ADMIN_USER being its one super user (requests on
        INTERNAL, the peers' listener, are not checked)."""
        properties = {"listener.security.protocol.map": f"CLIENT:{self.protocol},INTERNAL:PLAINTEXT"}
        if self.tls is not None:
            properties["ssl.keystore.location"] = self.tls.broker_keystore
        if self.users_file is not None:
            properties["sasl.enabled.mechanisms"] = self.mechanism
            properties["logquake.sasl.users.file"] = str(self.users_file)
            if authorizer:
                properties.update({"authorizer.class.name": AUTHORIZER, "super.users": f"User:{ADMIN_USER}"})
        return properties

    def client(self) -> ClientSecurity:
        """The workload user's settings (TLS only: the listener's, there are no users)."""
        return self._client(USER, self.password)

    def admin_client(self) -> ClientSecurity:
        """The harness's own super user's settings (TLS only: the same as `client()`)."""
        return self._client(ADMIN_USER, self.admin_password)

    def _client(self, user: str, password: str | None) -> ClientSecurity:
        sasl = self.users_file is not None
        return ClientSecurity(self.protocol, ca_location=self.tls.ca if self.tls else None,
                              mechanism=self.mechanism if sasl else None, username=user if sasl else None,
                              password=password if sasl else None)

    def describe(self) -> dict[str, Any]:
        """What a run may store: no password, no key, no path into the secrets directory."""
        described = describe_mode(self.mode, self.mechanism, self.enforces_acls)
        admin = {"super.users": f"User:{self.admin_client().username}"} if self.enforces_acls else {}
        assert described == {"mode": self.mode, **self.client().describe(), **admin}
        return described

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


# ----- a --system description's placeholders (harness.system) -------------------------------------------

# paths into the secrets directory ("" where the mode has none), the protocol and the (public) user names
TEMPLATE_PLACEHOLDERS = ("security_mode", "security_protocol", "ssl_keystore", "ssl_certificate", "ssl_key", "ssl_ca",
                         "sasl_mechanism", "sasl_users_file", "sasl_user", "sasl_admin_user")
# the passwords: only a description's [files] texts may name them (never a command line, which may be logged)
SECRET_PLACEHOLDERS = ("sasl_password", "sasl_admin_password")


def template_values(security: ClusterSecurity | None, mechanism: str = MECHANISM) -> dict[str, str]:
    """The values of TEMPLATE_PLACEHOLDERS for a cluster secured by `security` (None: plaintext, whose
    `{security_protocol}` is PLAINTEXT and whose paths are empty); nothing secret, only paths to it."""
    tls = security.tls if security is not None else None
    users = security.users_file if security is not None else None
    return {"security_mode": security.mode if security is not None else "none",
            "security_protocol": security.protocol if security is not None else "PLAINTEXT",
            "ssl_keystore": tls.broker_keystore if tls else "", "ssl_certificate": tls.broker_certificate if tls else "",
            "ssl_key": tls.broker_key if tls else "", "ssl_ca": tls.ca if tls else "",
            "sasl_mechanism": security.mechanism if security is not None else mechanism,
            "sasl_users_file": str(users) if users else "", "sasl_user": USER, "sasl_admin_user": ADMIN_USER}


def template_secrets(security: ClusterSecurity | None) -> dict[str, str]:
    """The values of SECRET_PLACEHOLDERS: both passwords ("" where the mode has no users)."""
    return {"sasl_password": (security.password if security is not None else None) or "",
            "sasl_admin_password": (security.admin_password if security is not None else None) or ""}
