"""Kafka's `sasl.jaas.config` value: the login a broker uses on its own outgoing SASL connections.

A broker that talks SASL to its peers (the inter-broker listener is
`SASL_PLAINTEXT` or `SASL_SSL`) authenticates with
`sasl.mechanism.inter.broker.protocol` and the credentials of Kafka's
per-listener property `listener.name.<listener>.<mechanism>.sasl.jaas.config`
(KIP-103 listener prefixes, both parts lowercased), whose value is one JAAS
login module entry (the syntax of Java's `javax.security.auth.login`
configuration files, as Kafka's `JaasConfig` reads it):

    <LoginModule class> <control flag> [option=value ...];

e.g. `org.apache.kafka.common.security.scram.ScramLoginModule required
username="broker" password="broker-secret";`. Accepted here, strictly:
- exactly one entry, ended by `;`;
- the class of the mechanism: `...plain.PlainLoginModule` for PLAIN,
  `...scram.ScramLoginModule` for SCRAM-SHA-256 and SCRAM-SHA-512;
- a control flag `required`, `requisite`, `sufficient` or `optional` (any
  case, as Kafka reads it; with one module they mean the same);
- the options `username` and `password`, each once and not empty; a value is a
  double-quoted string (`\\"` and `\\\\` escape a quote and a backslash) or a bare
  word. Other options are refused: PlainLoginModule's `user_<name>` entries
  (Kafka's server-side PLAIN users) because users come from
  `logquake.sasl.users.file`, anything else because it would be ignored.

Errors (`JaasError`) say what is wrong and where, and never repeat text of the
value: a value that is malformed may hold the password anywhere. `JaasLogin`
does not show its password in `repr`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
CONTROL_FLAGS = ("required", "requisite", "sufficient", "optional")
OPTIONS = ("username", "password")
_BARE_STOP = set(" \t\r\n;=\"")


class JaasError(ValueError):
    """A `sasl.jaas.config` value that cannot be used; the message never holds text of the value."""


@dataclass(frozen=True)
class JaasLogin:
    username: str
    password: str = field(repr=False)


def _tokens(text: str):
    """(kind, text, offset) for each token: "word", "quoted", "=" or ";"."""
    position = 0
    while position < len(text):
        char = text[position]
        if char.isspace():
            position += 1
        elif char in "=;":
            yield char, char, position
            position += 1
        elif char == '"':
            start, position, value = position, position + 1, []
            while True:
                if position >= len(text):
                    raise JaasError(f"the quoted value that starts at character {start + 1} is not closed")
                char = text[position]
                if char == "\\" and position + 1 < len(text):
                    value.append(text[position + 1])
                    position += 2
                elif char == '"':
                    position += 1
                    break
                else:
                    value.append(char)
                    position += 1
            yield "quoted", "".join(value), start
        else:
            start = position
            while position < len(text) and text[position] not in _BARE_STOP:
                position += 1
            yield "word", text[start:position], start


def parse_jaas_config(text: str, mechanism: str) -> JaasLogin:
    """The login of one `sasl.jaas.config` value for `mechanism`; JaasError if it is not exactly the accepted form."""
    module = LOGIN_MODULES.get(mechanism)
    if module is None:
        raise JaasError(f"mechanism {mechanism} has no login module here; expected one of {', '.join(LOGIN_MODULES)}")
    tokens = list(_tokens(text))
    if not tokens:
        raise JaasError(f"the value is empty; expected '{module} required username=\"...\" password=\"...\";'")
    kind, word, _ = tokens[0]
    if kind != "word" or word != module:
        raise JaasError(f"the value does not start with the login module of {mechanism}: expected {module}")
    if len(tokens) < 2 or tokens[1][0] != "word" or tokens[1][1].lower() not in CONTROL_FLAGS:
        raise JaasError(f"the login module is not followed by a control flag; expected one of {', '.join(CONTROL_FLAGS)}")
    options: dict[str, str] = {}
    index = 2
    while index < len(tokens) and tokens[index][0] != ";":
        number = len(options) + 1
        kind, key, offset = tokens[index]
        if kind != "word":
            raise JaasError(f"option {number} (character {offset + 1}) does not start with a name; expected name=value")
        if index + 2 >= len(tokens) or tokens[index + 1][0] != "=" or tokens[index + 2][0] not in ("word", "quoted"):
            raise JaasError(f"option {number} (character {offset + 1}) is not name=value")
        if key.startswith("user_"):
            raise JaasError(f"option {number} is a user_<name> entry (Kafka's server-side PLAIN users); users come "
                            "from logquake.sasl.users.file, and this value holds only username and password")
        if key not in OPTIONS:
            raise JaasError(f"option {number} (character {offset + 1}) is not one this broker reads; expected "
                            "username and password only")
        if key in options:
            raise JaasError(f"option {key} is given twice")
        options[key] = tokens[index + 2][1]
        index += 3
    if index >= len(tokens):
        raise JaasError("the login module entry does not end with ';'")
    if index != len(tokens) - 1:
        raise JaasError(f"something follows the ';' at character {tokens[index][2] + 1}; expected exactly one login "
                        "module entry (Kafka's rule for sasl.jaas.config)")
    for key in OPTIONS:
        if not options.get(key):
            raise JaasError(f"option {key} is {'empty' if key in options else 'missing'}; expected "
                            f"{key}=\"...\" with the broker's own credentials")
    return JaasLogin(options["username"], options["password"])
