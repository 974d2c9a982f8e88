"""Client-side security: Kafka SASL/TLS settings for every client the product opens, and the read API's token.

Production brokers of a province sit on a shared network, so the workers, ``onestop topics`` and ``onestop replay``
must all be able to authenticate (SASL PLAIN or SCRAM) and encrypt (TLS, optionally with a client certificate).
Three client libraries are involved (Faust over aiokafka, kafka-python for admin calls and publishing), each
spelling the same options differently; building all of them here from one ``WorkerSettings`` keeps them from
drifting apart, so a worker never ends up with a TLS consumer and a plaintext admin client.

The read API lists dossier codes with their deadlines. That is not personal data, but it is internal working
information of the agencies, so when a token is configured every per-dossier and per-unit view requires
``Authorization: Bearer <token>``. Secrets come from the environment or, preferably, from files (Docker and
Kubernetes secrets), so they never appear in ``ps`` output, in ``docker inspect`` or in a settings repr.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from pathlib import Path
from typing import Any

__all__ = [
    "PROTOCOLS",
    "SASL_MECHANISMS",
    "SecurityConfigError",
    "read_secret",
    "api_token",
    "kafka_ssl_context",
    "kafka_client_config",
    "faust_broker_settings",
    "bearer_ok",
    "UNAUTHORIZED",
    "describe",
]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SecurityConfigError(ValueError):
    """A security setting that cannot work; raised at start-up so a worker never runs half-configured."""


def read_secret(value: str | None, path: Path | str | None, name: str) -> str | None:
    """The secret from its file when one is named (trailing newline dropped), else the literal value.

    A named file that is missing or empty is an error rather than "no secret": failing closed is what keeps a
    mistyped secret mount from silently opening the read API.
    """
    if path:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecurityConfigError(f"{name}_file: cannot read {p}: {exc.strerror or exc}") from None
        if not text:
            raise SecurityConfigError(f"{name}_file: {p} is empty")
        return text
    if value is not None and value.strip():
        return value.strip()
    return None


def api_token(settings: Any) -> str | None:
    """The bearer token the read API requires, or None when it is open (the loopback-only default)."""
    return read_secret(getattr(settings, "api_token", None), getattr(settings, "api_token_file", None), "api_token")


def _protocol(settings: Any) -> str:
    protocol = (getattr(settings, "kafka_security_protocol", None) or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise SecurityConfigError(f"kafka_security_protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    return protocol


def _sasl(settings: Any) -> tuple[str, str, str]:
    mechanism = (getattr(settings, "kafka_sasl_mechanism", None) or "PLAIN").upper()
    if mechanism not in SASL_MECHANISMS:
        raise SecurityConfigError(f"kafka_sasl_mechanism: {mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}")
    username = getattr(settings, "kafka_sasl_username", None)
    password = read_secret(getattr(settings, "kafka_sasl_password", None),
                           getattr(settings, "kafka_sasl_password_file", None), "kafka_sasl_password")
    if not username or not password:
        raise SecurityConfigError("kafka_sasl_username and kafka_sasl_password (or kafka_sasl_password_file) are "
                                  f"required with kafka_security_protocol={_protocol(settings)}")
    return mechanism, username, password


def kafka_ssl_context(settings: Any) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL, verifying the broker against ``kafka_ssl_cafile`` (or the system CAs).

    One context serves aiokafka and kafka-python alike, so hostname checking and the client certificate are
    decided once.
    """
    if _protocol(settings) not in ("SSL", "SASL_SSL"):
        return None
    cafile = getattr(settings, "kafka_ssl_cafile", None)
    certfile = getattr(settings, "kafka_ssl_certfile", None)
    keyfile = getattr(settings, "kafka_ssl_keyfile", None)
    if keyfile and not certfile:
        raise SecurityConfigError("kafka_ssl_keyfile needs kafka_ssl_certfile")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None)
        if certfile:
            context.load_cert_chain(str(certfile), keyfile=str(keyfile) if keyfile else None)
    except (OSError, ssl.SSLError) as exc:
        raise SecurityConfigError(f"kafka TLS files: {exc}") from None
    context.check_hostname = bool(getattr(settings, "kafka_ssl_check_hostname", True))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def kafka_client_config(settings: Any) -> dict[str, Any]:
    """Keyword arguments for kafka-python clients (KafkaAdminClient, KafkaProducer, KafkaConsumer).

    Empty for PLAINTEXT, so existing call sites behave exactly as before.
    """
    protocol = _protocol(settings)
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security_protocol": protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        config["ssl_context"] = context
    if protocol.startswith("SASL_"):
        mechanism, username, password = _sasl(settings)
        config.update(sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password)
    return config


def faust_broker_settings(settings: Any) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: ``broker_credentials`` as Faust 0.15 expects them.

    Faust hands these to every aiokafka consumer and producer it creates (source topics, changelogs, the DLQ
    and alerts), which is why they belong to the app and not to individual topics.
    """
    import faust

    protocol = _protocol(settings)
    if protocol == "PLAINTEXT":
        return {}
    context = kafka_ssl_context(settings)
    if protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(context)}
    mechanism, username, password = _sasl(settings)
    # SASLCredentials switches itself to SASL_SSL when it is given a context, and stays SASL_PLAINTEXT without.
    return {"broker_credentials": faust.SASLCredentials(username=username, password=password, ssl_context=context,
                                                         mechanism=mechanism)}


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


UNAUTHORIZED = ("trang này cần tiêu đề Authorization: Bearer <token> / "
                "this view needs the header Authorization: Bearer <token>")
"""The error of a protected view asked without the right bearer token, in both languages."""


def bearer_ok(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries the token; True when no token is configured.

    Both sides are hashed first so the comparison takes the same time whatever the length or the first wrong
    character of the guess (``hmac.compare_digest`` alone still leaks the length).
    """
    if not token:
        return True
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(_digest(credentials.strip()), _digest(token))


def describe(settings: Any) -> str:
    """One line for the start-up log: what is protected and how, never a secret."""
    protocol = _protocol(settings)
    parts = [f"kafka {protocol}"]
    if protocol.startswith("SASL_"):
        parts.append(f"sasl {(getattr(settings, 'kafka_sasl_mechanism', None) or 'PLAIN').upper()} "
                     f"as {getattr(settings, 'kafka_sasl_username', None)!r}")
    token = api_token(settings)
    if token:
        scope = "read API, /figures" + (" and /metrics" if getattr(settings, "metrics_require_token", False) else "")
        parts.append(f"bearer token required on {scope}")
    else:
        parts.append("read API open (no token configured)")
    return "; ".join(parts)
