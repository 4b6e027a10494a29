"""How every Kafka client of a run reaches a secured listener: TLS and SASL/SCRAM settings per client library.

`ClientSecurity` holds what a client needs: the listener's security protocol
(`SSL`, `SASL_PLAINTEXT`, `SASL_SSL`), the CA file that signed the broker's
certificate, and for SASL the mechanism, user name and password. It renders
them as each library spells them: confluent-kafka (librdkafka) properties,
kafka-python and aiokafka keyword arguments (aiokafka takes an `ssl_context`).

The run's security is process-wide: the harness calls `use_client_security` once the
cluster is up (and with None at the end), and every place that opens a client
merges `confluent_settings(...)` / `python_client_settings(...)` into its
configuration, so no workload has to carry it through its signatures. A client
in a child process (`workloads.isolated`) gets it through its pipe, never
through a file or the environment.

Secrets: the password is in memory only. `describe()` gives the non-secret part
(protocol, mechanism, user name) for test.json; `repr` hides the password.

Thread-safety: `use_client_security` is called before the workers start and after they
stop; readers only read one reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientSecurity", "client_security", "confluent_settings", "python_client_settings", "use_client_security"]

PROTOCOLS = ("SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class ClientSecurity:
    protocol: str
    ca_location: str | None = None
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self):
        assert self.protocol in PROTOCOLS, self.protocol
        assert self.uses_tls == (self.ca_location is not None), "TLS needs a CA file, and only TLS does"
        assert self.uses_sasl == (self.mechanism is not None and self.username is not None
                                  and self.password is not None), "SASL needs a mechanism, user and password"

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def describe(self) -> dict[str, Any]:
        """The non-secret settings: what test.json may hold."""
        described: dict[str, Any] = {"security.protocol": self.protocol}
        if self.uses_sasl:
            described.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username})
        return described

    def confluent(self) -> dict[str, Any]:
        """confluent-kafka (librdkafka) properties."""
        settings: dict[str, Any] = {"security.protocol": self.protocol}
        if self.uses_tls:
            settings["ssl.ca.location"] = self.ca_location
        if self.uses_sasl:
            settings.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                             "sasl.password": self.password})
        return settings

    def kafka_python(self) -> dict[str, Any]:
        """kafka-python keyword arguments (KafkaProducer, KafkaConsumer, KafkaAdminClient)."""
        settings: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            settings["ssl_cafile"] = self.ca_location
            settings["ssl_check_hostname"] = True
        if self.uses_sasl:
            settings.update({"sasl_mechanism": self.mechanism, "sasl_plain_username": self.username,
                             "sasl_plain_password": self.password})
        return settings

    def aiokafka(self) -> dict[str, Any]:
        """aiokafka keyword arguments: as kafka-python's, with the CA in an ssl_context."""
        settings: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            from aiokafka.helpers import create_ssl_context

            settings["ssl_context"] = create_ssl_context(cafile=self.ca_location)
        if self.uses_sasl:
            settings.update({"sasl_mechanism": self.mechanism, "sasl_plain_username": self.username,
                             "sasl_plain_password": self.password})
        return settings


_current: ClientSecurity | None = None


def use_client_security(security: ClientSecurity | None) -> None:
    """Make `security` the settings of every client this process opens from now on (None: plaintext)."""
    global _current
    _current = security


def client_security() -> ClientSecurity | None:
    return _current


def confluent_settings(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with the run's security properties added (unchanged when the run is plaintext)."""
    return config if _current is None else {**config, **_current.confluent()}


def python_client_settings(library: str, config: dict[str, Any]) -> dict[str, Any]:
    """kafka-python's or aiokafka's keyword arguments `config` with the run's security added."""
    if _current is None:
        return config
    assert library in ("kafka-python", "aiokafka"), library
    return {**config, **(_current.kafka_python() if library == "kafka-python" else _current.aiokafka())}
