"""Security: loopback listeners, the read API's bearer token, Kafka SASL/TLS settings, no personal data out.

The settings tests check what every client library is handed; the TLS tests check it on the wire against a
loopback TLS endpoint (a certificate signed by a test CA embedded below, valid 2000-2100, for 127.0.0.1 only and
used by nothing else). SASL cannot be exercised end to end here: the embedded broker speaks neither SASL nor TLS,
so docs/reliability.md says what remains to check on a production broker.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.tools.broker import EmbeddedBroker
from streams.runtime.security import (SecurityConfigError, api_token, bearer_ok, describe, faust_broker_settings, kafka_client_config, kafka_ssl_context)
from streams.runtime.settings import WorkerSettings
from tests.builders import SAMPLE_AT, sample_lines
from tests.procs import WorkerProcess, figures_equal, http, listening_addresses, wait_for

REPO = Path(__file__).resolve().parents[1]

TEST_CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIIC9DCCAdygAwIBAgICEAAwDQYJKoZIhvcNAQELBQAwGjEYMBYGA1UEAwwPb25l
c3RvcC10ZXN0LWNhMCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAxMDAwMDAwWjAa
MRgwFgYDVQQDDA9vbmVzdG9wLXRlc3QtY2EwggEiMA0GCSqGSIb3DQEBAQUAA4IB
DwAwggEKAoIBAQCVFOoRHBlhxoMAujgiXz53gqxRUO+Mtt3iH/7LCJMO7fmjZaT8
V5x2ms9WF9pH21H7uxoUdKq4zsyx93Prw2RdBk70C2z3MN6QY5S+E2fi2tOgPKOp
X4y8lTEml4aSTJVAUbQeSMO4QU0xonJs7WnrY0lwvmhUmoINj9W7b0Jdqnw1k4It
rh6ySwQD5J77NROcwfAkL4hWkqRPJtEdeLAn65RJ1Eew2xdcK5HRpqhMgts0bw7B
Od7Ns1tnSj06ORTdTURQ/3m3oShGIoyO4t8CHtks+fHHnhkW8tRghizP6cxcD28b
zSSuDSdA7CPj5lSTt4ukwj3E9LtNl7kk3oWxAgMBAAGjQjBAMA8GA1UdEwEB/wQF
MAMBAf8wDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBR7mD3FoaD3ONWPpTUnPsxR
PELv7zANBgkqhkiG9w0BAQsFAAOCAQEAQNEqvBkNP5IgJgEpy5yZx+pGahc0ZPbz
Gs/r1hFGjuQ9yVhp1NNiHXs2OxjWgfe+j1eTxirUPTBcO228H/smkZKD9TCb2o8d
Mhuq1MqdWZDrDYSya5gQx+gnNQ2T4mCVo9Ge7wdofk94B10rXQ9FGJ5IipSGj8F2
GAgRbpeFE63ekK5JTTZBiJp9VGP2R2SVWCxptsgRsKgCdk4YvuliUDI1KtCdnP4B
pPatfQmxUQI/tC+R2uOqraY+2RIIMSYnoAyg0RAsHuyLzqRU1ViLndZA/lNzZDEr
ahzogFhmxDEK1L1FqH1YbNxjaIjkNCinJ0ReE1KJZfly1T3rmFdFkw==
-----END CERTIFICATE-----
"""

SERVER_CERT_PEM = """\
-----BEGIN CERTIFICATE-----
MIIDOTCCAiGgAwIBAgICEAEwDQYJKoZIhvcNAQELBQAwGjEYMBYGA1UEAwwPb25l
c3RvcC10ZXN0LWNhMCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAxMDAwMDAwWjAU
MRIwEAYDVQQDDAlsb2NhbGhvc3QwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEK
AoIBAQC5+Y3Fj8l7HB2Ua7TI5rtxB5nqtN2+szXWwZwLQkRDokgL+kQ/p+qFMFW5
yX59GZLIsK3spQpFngKRrBKflQ958mjYIlTY8qPPXqW8ArfsnEd1+ErsCBy04s6I
xnISUd+W560qoFCMx5UEpFqjdtgMuLDv4AHaes6zZqfIuoHm/Vgc0b1GYwGA6c6I
EH0YiGosBFoptBPBf6J2uZwTaS/QJ30Z1SF8Vro0vSGnU5rns+MIWeMhJjFYvM1Z
UDSn1Mb+DDffcHqrI7SwQcFKLxb4TNUp9P4buVVWFm7eh8CankoY0Y+70yOy5ozb
Uxu/4hxJpCb3gBm/X7ryp229QWPdAgMBAAGjgYwwgYkwCQYDVR0TBAIwADALBgNV
HQ8EBAMCBaAwEwYDVR0lBAwwCgYIKwYBBQUHAwEwGgYDVR0RBBMwEYcEfwAAAYIJ
bG9jYWxob3N0MB8GA1UdIwQYMBaAFHuYPcWhoPc41Y+lNSc+zFE8Qu/vMB0GA1Ud
DgQWBBTJY/KsDIfxTf5LOHrtEJltSbLdrzANBgkqhkiG9w0BAQsFAAOCAQEAhuMN
edpCrIUbtMWbz2tLH9DOANMe8aF/exsQ1IeLvzSThax7ZmNd96HeubTj4GCYhBBR
Tt3morBUqwwBJ044Qf1/Kc9imye2D/naH5/3Spiv5y3Xx2BXNy2yplJifWKl3Red
UaZPigBg4J3UdJtXd5bXu2V1mgFXuefxNAWgovsQqm3pMGcEdE8brBZeZzz1PY0/
E8sHc4wyM7c9VZ3dr+R9xKs0OLAYyV0R4jVM3vLlAqQ8PgPCZFf1xAaNqGSWCrFD
8LULDY+SxDpwijI1htVbIqHDkjGWje9BDnA8v6GLb52MwUiK1BfCXDbeY/yKcYFt
6S2YAgSuD9ZB96NGiA==
-----END CERTIFICATE-----
"""

SERVER_KEY_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC5+Y3Fj8l7HB2U
a7TI5rtxB5nqtN2+szXWwZwLQkRDokgL+kQ/p+qFMFW5yX59GZLIsK3spQpFngKR
rBKflQ958mjYIlTY8qPPXqW8ArfsnEd1+ErsCBy04s6IxnISUd+W560qoFCMx5UE
pFqjdtgMuLDv4AHaes6zZqfIuoHm/Vgc0b1GYwGA6c6IEH0YiGosBFoptBPBf6J2
uZwTaS/QJ30Z1SF8Vro0vSGnU5rns+MIWeMhJjFYvM1ZUDSn1Mb+DDffcHqrI7Sw
QcFKLxb4TNUp9P4buVVWFm7eh8CankoY0Y+70yOy5ozbUxu/4hxJpCb3gBm/X7ry
p229QWPdAgMBAAECggEAK+bGCZzhkGMI9Yw+a02ScoJ7ml0TWozmGPnv2vWL9VZW
ASPVYByEv2ezWO4Aosn6bU9N42brZ5c/HoG7DLpsopovl1P1aRhQRKfgYmNW5S9Y
LDhOgW0Bz86ZuE52R65VpIMwzPb2xODpY+Tjc6KeqlQgCqQ788YZTN7fHUKv3yXI
YDZ6a/xzrPveLU71xXhQ4aUUnam39OD7v2KdzJtBhhJGx3fosoBVev5Ka8yLQVdd
fzru3en3VT2EfDA45BblgTyjfykPZQ9/9KmBWs1u+yFUhgDeadYkGLIXFHb93b0W
36Bp4lFN4SjwT+mty3oV0nWQOPk27hIvbR9sHQwWoQKBgQDop5cUeE+SR8aktkNN
qQ8Tb/GJpjNoL6DIXZB6VZORgt2fC6xXOF24in9zdGu3z2cMye5GmUiRGzTrFdeI
Yu6MKlv+gNi+5wujQ56yxgCc2s79G77dtxuesqbgVjsjUaYAwwVu1cNgLDBRPy8e
rjO6rV8S/d8foaHP5aR+g5CkPQKBgQDMottT7hfO/fi4iqywaSwQq2+N0dYeZxer
WZxZFamqm5PPzdHyY+RbD5F9dyS/U1juedF4oj62pW0D9oXSl3+88NFPkSTZMHfx
c8Lfc1gPWcGLgH5OtsXVZxSRCuXpcc85+tHET/lUoF4NbcAOPh3wSP43ETsDiQEJ
1hKWp/iYIQKBgHnSJx2k0aV6x9y/QwaLG0XGO+cji49mQP4pX9lurdJnf7wj1J3m
+cwDWTEPKMgaZY8gvQ9ie8jfQhpGWZEknFvwYjMlLFjpigJ3CcX6P5/iQrftq0dU
9bVnPlIBVP3tZsrHUzTx4VeeS75/IyEhfhylYz8Ch658Z8oAKN3F7hrRAoGALjfy
Naim8/dkv7mCe22lqDYwQeXM6Jz8OZVJvM0pvwDYh6zC6G4rW23OvHm2cQgQI/yb
lRV/+JywXJ7HZuMU1MXHYKM1oWBTFtPAhdt1XjI1hp6E6J5bXHGlsYS2nN05oqzF
yAMQG08FLx9Eq3LYLDcwQ5u+qnO9Kk2RcTmK6kECgYBX1dMQWlt3h3qqpnhXrZqQ
pqCtVko7I+Nj5yUwz9297L/kGfif1D/PhLYnTy4XByTHTpzHeb1UUnqn3JyXs3Nn
2M7Aw5u7DY2mUwEXkv3yHJQH/KS6XbOjBX4rFTQCaOG7mWQwabzZszsba6W29Ped
YN64z1X/B++Fp5r9zb5mrg==
-----END PRIVATE KEY-----
"""

OTHER_CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIIC8DCCAdigAwIBAgICEAIwDQYJKoZIhvcNAQELBQAwGDEWMBQGA1UEAwwNc29t
ZS1vdGhlci1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFowGDEW
MBQGA1UEAwwNc29tZS1vdGhlci1jYTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCC
AQoCggEBAMWrq9wWyHD2J+S8sxFtG5gKNecV1/DFD3YFtlTlXAURwQI3BhnRxZDW
yqFsPFKyMZnCkbl6LTDh0hQrDY2dzOqLa861ZLpDMh5oI16GwflEsmxbTohMYdho
KRr/8aXQEo3hUJb2pyQIvzoyPfdXE9PFzEUmraDcnj6Y3xk/hPE/gPNtZsyYhfJV
oxoRFCSm+2BEVuZhEM8Su9qo6rY2m7f75x2i+yUivWkXzVHk0ewfS7cuDbBoQGTq
097dOlx5K7/wZX1kzJJ7EpZMQhG3RtQVGTWMHNfGJMsZ3SvuZMf1Te5LjIQi1ZDw
HsxIZaKXs0H4ZFv7jD98dfzJGnJhNGsCAwEAAaNCMEAwDwYDVR0TAQH/BAUwAwEB
/zAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFNjNVK0YvZT3BXMA9pFOtialBrIu
MA0GCSqGSIb3DQEBCwUAA4IBAQAVdrY7mBEzLKrElPW3iBX6V8fM/jB/Wae0pRIt
tDDjb/cHYE13EzdY9lxZ1BHHH8Q0lOykx9BSymisF0Wf5eM8MRowDaCQWB8/faFt
B6+lkmws0DPZnn9eTDPjhpsVJR2oILTxrnotfLtZGYf6cKChDmHUZn7NI70PTSmX
viLNaB4FkUHVusILdUnavnvPOD3nbfw6DeZoITWp+luK+X5UeUvqizaDDhTZkOsk
E7xESpj2DgySYCCqS59MyrLE6MphElHdJ9+Tf1Ec//rVqd9C9cyvmCJYBVU3URs3
qnWd7W4wupH3qfgSC951DDgJYZRfV3C+yF8urbu1jCe6TWS6
-----END CERTIFICATE-----
"""


# ---------------------------------------------------------------------------------------------------------------
# Settings -> client configuration.


def test_plaintext_adds_nothing_so_existing_clients_are_unchanged() -> None:
    s = WorkerSettings()
    assert kafka_client_config(s) == {} and faust_broker_settings(s) == {}
    assert api_token(s) is None and "read API open" in describe(s)


def test_sasl_ssl_settings_reach_kafka_python_and_faust(tmp_path) -> None:
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    ca = tmp_path / "ca.pem"
    ca.write_text(TEST_CA_PEM)
    secret = tmp_path / "sasl-password"
    secret.write_text("s3cret-from-file\n")
    s = WorkerSettings.from_env({"ONESTOP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                 "ONESTOP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                 "ONESTOP_KAFKA_SASL_USERNAME": "onestop-worker",
                                 "ONESTOP_KAFKA_SASL_PASSWORD_FILE": str(secret),
                                 "ONESTOP_KAFKA_SSL_CAFILE": str(ca)})
    config = kafka_client_config(s)
    assert config["security_protocol"] == "SASL_SSL" and config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("onestop-worker", "s3cret-from-file")
    assert config["ssl_context"].verify_mode == ssl.CERT_REQUIRED and config["ssl_context"].check_hostname
    creds = faust_broker_settings(s)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(creds)  # what Faust hands every aiokafka consumer and producer
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_password"] == "s3cret-from-file" and auth["ssl_context"] is not None
    # The secret is in neither the settings' repr, the start-up line, nor the credentials' repr.
    assert "s3cret" not in repr(s) + describe(s) + repr(creds)


def test_the_worker_app_is_built_with_the_credentials(tmp_path) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.worker import build_app
    from streams.runtime.clock import FrozenClock
    from streams.runtime.processor import Processor

    s = WorkerSettings(data_dir=tmp_path / "data", kafka_security_protocol="SASL_PLAINTEXT",
                       kafka_sasl_username="u", kafka_sasl_password="p")
    app = build_app(s, Processor(), FrozenClock(datetime.datetime.fromisoformat(SAMPLE_AT)))
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["sasl_mechanism"] == "PLAIN"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("u", "p")


def test_metrics_behind_a_token_without_a_token_is_refused_at_start(tmp_path) -> None:
    from streams.worker import build_app
    from streams.runtime.clock import FrozenClock
    from streams.runtime.processor import Processor

    with pytest.raises(SecurityConfigError, match="metrics_require_token needs api_token"):
        build_app(WorkerSettings(data_dir=tmp_path / "data", metrics_require_token=True), Processor(),
                  FrozenClock(datetime.datetime.fromisoformat(SAMPLE_AT)))


@pytest.mark.parametrize("env, message", [
    ({"ONESTOP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "kafka_sasl_username and kafka_sasl_password"),
    ({"ONESTOP_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "ONESTOP_KAFKA_SASL_USERNAME": "u",
      "ONESTOP_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "kafka_sasl_password_file: cannot read"),
    ({"ONESTOP_KAFKA_SECURITY_PROTOCOL": "SSL", "ONESTOP_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "kafka TLS files"),
    ({"ONESTOP_KAFKA_SECURITY_PROTOCOL": "SSL", "ONESTOP_KAFKA_SSL_KEYFILE": "/k.pem"}, "needs kafka_ssl_certfile"),
    ({"ONESTOP_API_TOKEN_FILE": "/nonexistent/token"}, "api_token_file: cannot read"),
])
def test_a_security_setting_that_cannot_work_is_refused_with_its_name(env, message) -> None:
    s = WorkerSettings.from_env(env)
    with pytest.raises(SecurityConfigError, match=re.escape(message)):
        kafka_client_config(s)
        api_token(s)


def test_unknown_protocols_and_mechanisms_are_refused_when_the_settings_are_read() -> None:
    with pytest.raises(ValueError, match="kafka_security_protocol"):
        WorkerSettings.from_env({"ONESTOP_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ValueError, match="kafka_sasl_mechanism"):
        WorkerSettings.from_env({"ONESTOP_KAFKA_SASL_MECHANISM": "GSSAPI"})


def test_an_empty_token_file_is_an_error_not_an_open_api(tmp_path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(SecurityConfigError, match="is empty"):
        api_token(WorkerSettings(api_token_file=empty))


def test_bearer_check() -> None:
    assert bearer_ok(None, None) and bearer_ok("anything", None)
    assert bearer_ok("Bearer t0k", "t0k") and bearer_ok("bearer   t0k ", "t0k")
    for header in (None, "", "t0k", "Basic dDBrOg==", "Bearer", "Bearer t0", "Bearer t0kk", "Bearer T0K"):
        assert not bearer_ok(header, "t0k"), header


# ---------------------------------------------------------------------------------------------------------------
# TLS on the wire: a loopback endpoint that records whether each client completed a verified handshake.


class TLSEndpoint:
    def __init__(self, tmp_path: Path) -> None:
        cert, key = tmp_path / "server.pem", tmp_path / "server.key"
        cert.write_text(SERVER_CERT_PEM)
        key.write_text(SERVER_KEY_PEM)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.handshakes: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes.append("ok " + tls.version())
            except (ssl.SSLError, OSError) as exc:
                self.handshakes.append(f"refused {type(exc).__name__}")

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def tls_endpoint(tmp_path):
    endpoint = TLSEndpoint(tmp_path)
    yield endpoint
    endpoint.close()


def _ssl_settings(tmp_path: Path, port: int, ca_pem: str) -> WorkerSettings:
    ca = tmp_path / "client-ca.pem"
    ca.write_text(ca_pem)
    return WorkerSettings(broker=f"127.0.0.1:{port}", kafka_security_protocol="SSL", kafka_ssl_cafile=ca)


def test_admin_clients_speak_verified_tls_to_the_broker(tmp_path, tls_endpoint, monkeypatch) -> None:
    import streams.runtime.topics
    from streams.runtime.topics import ensure_topics

    real = streams.runtime.topics.KafkaAdminClient
    # The endpoint is no broker, so give up bootstrapping after 1.5 s instead of kafka-python's 30 s.
    monkeypatch.setattr(streams.runtime.topics, "KafkaAdminClient", lambda **kw: real(bootstrap_timeout_ms=1500, **kw))
    good = _ssl_settings(tmp_path, tls_endpoint.port, TEST_CA_PEM)
    with pytest.raises(Exception):  # the endpoint is no Kafka broker: the point is the handshake before that
        ensure_topics(good.broker, good, timeout=2)
    assert any(h.startswith("ok TLSv1.") for h in tls_endpoint.handshakes), tls_endpoint.handshakes
    tls_endpoint.handshakes.clear()
    wrong = _ssl_settings(tmp_path, tls_endpoint.port, OTHER_CA_PEM)
    with pytest.raises(Exception):
        ensure_topics(wrong.broker, wrong, timeout=2)
    assert tls_endpoint.handshakes and not any(h.startswith("ok") for h in tls_endpoint.handshakes)

def test_the_workers_aiokafka_clients_speak_verified_tls(tmp_path, tls_endpoint) -> None:
    """The client Faust builds for every consumer and producer, from the worker's own credentials."""
    from aiokafka import AIOKafkaClient
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    async def connect(settings: WorkerSettings) -> None:
        auth = credentials_to_aiokafka_auth(faust_broker_settings(settings)["broker_credentials"])
        client = AIOKafkaClient(bootstrap_servers=settings.broker, request_timeout_ms=2000, **auth)
        try:
            await asyncio.wait_for(client.bootstrap(), timeout=10)
        except Exception:  # the endpoint is no Kafka broker: the point is the handshake before that
            pass
        finally:
            await client.close()

    def handshakes_after(settings: WorkerSettings) -> list[str]:
        tls_endpoint.handshakes.clear()
        asyncio.run(connect(settings))
        # The endpoint's thread records the outcome right after the handshake; give it a moment under load.
        wait_for(lambda: tls_endpoint.handshakes, timeout=10, interval=0.1, what="a TLS handshake attempt")
        return list(tls_endpoint.handshakes)

    good = handshakes_after(_ssl_settings(tmp_path, tls_endpoint.port, TEST_CA_PEM))
    assert any(h.startswith("ok TLSv1.") for h in good), good
    wrong = handshakes_after(_ssl_settings(tmp_path, tls_endpoint.port, OTHER_CA_PEM))
    assert not any(h.startswith("ok") for h in wrong), wrong


def test_kafka_ssl_context_checks_hostnames_unless_told_not_to(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(TEST_CA_PEM)
    assert kafka_ssl_context(WorkerSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca)).check_hostname
    relaxed = WorkerSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca, kafka_ssl_check_hostname=False)
    assert not kafka_ssl_context(relaxed).check_hostname and kafka_ssl_context(relaxed).verify_mode == ssl.CERT_REQUIRED


# ---------------------------------------------------------------------------------------------------------------
# Listeners.


def test_the_embedded_broker_listens_on_loopback_only(tmp_path) -> None:
    with EmbeddedBroker(tmp_path / "broker") as broker:
        addresses = wait_for(lambda: listening_addresses(broker.pid), timeout=10, what="listening sockets")
        assert addresses and {ip for ip, _port in addresses} == {"127.0.0.1"}, addresses


def test_the_demo_starts_prometheus_and_alertmanager_on_loopback_only() -> None:
    source = (REPO / "streams" / "tools" / "demo.py").read_text(encoding="utf-8")
    listens = re.findall(r"--(?:web|cluster)\.listen-address=([^\"' ,)]*)", source)
    assert listens and all(v.startswith("127.0.0.1:") or v == "" for v in listens), listens


# ---------------------------------------------------------------------------------------------------------------
# A worker with a token, fed events that carry identity fields: nothing personal comes out anywhere.

IDENTITY = {
    "applicant_name": "Nguyễn Thị Bảo Ngọc", "phone": "0987654321", "identity_number": "079301012345",
    "email": "baongoc.nguyen@example.vn", "address": "Số 7 ngõ 15 Láng Hạ, Đống Đa",
}
IDENTITY_BYTES = [v.encode() for v in IDENTITY.values()] + [IDENTITY["applicant_name"].encode("utf-16-le")]
TOKEN = "tok-" + "7f3a" * 8


def _with_identity(line: bytes) -> bytes:
    """The same event with identity data where careless publishers put it: data, a nested object, free text."""
    doc = json.loads(line)
    data = doc["data"]
    data.update(IDENTITY)
    data["applicant"] = dict(IDENTITY)
    for nested in ("supplement", "apology"):
        if isinstance(data.get(nested), dict):
            data[nested]["reason"] = f"Bà {IDENTITY['applicant_name']} ({IDENTITY['phone']}) chưa nộp bản sao"
    if doc["type"].endswith((".stopped", ".reception_refused")):
        data["reason"] = f"Công dân {IDENTITY['applicant_name']} đề nghị"
    doc["x_applicant_phone"] = IDENTITY["phone"]  # a CloudEvents extension attribute
    return json.dumps(doc, ensure_ascii=False).encode()


def _leaks(blob: bytes) -> list[str]:
    return [v.decode(errors="replace") for v in IDENTITY_BYTES if v in blob]


def _topic_bytes(bootstrap: str, topic: str, partitions: int) -> tuple[bytes, int]:
    """Every record's bytes, committed or not (an aborted transaction's records must not leak either), and how many
    records; read to the end offsets, which also count the transaction markers no consumer is handed."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(tps)
    blobs, n = [], 0
    deadline = time.monotonic() + 60
    while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                n += 1
                blobs += [r.key or b"", r.value or b"", b"".join(k.encode() + (v or b"") for k, v in r.headers)]
    consumer.close()
    return b"\n".join(blobs), n


@pytest.mark.broker
def test_a_run_carrying_identity_fields_leaks_none_and_the_api_requires_the_token(kafka_bootstrap, topic_prefix,
                                                                                   tmp_path, request) -> None:
    from models.calendar import WorkCalendar
    from models.dossier import Context
    from models.figures import replay, score_document
    from tests.test_stream import PERIODS, Deployment

    now = datetime.datetime.fromisoformat(SAMPLE_AT)
    ctx = Context(now=now, calendar=WorkCalendar.default())
    lines = sample_lines()
    replayed = replay(list(enumerate(lines, 1)), ctx)
    expected = {p: score_document(replayed, p, ctx) for p in PERIODS}

    token_file = tmp_path / "api-token"
    token_file.write_text(TOKEN + "\n")
    d = Deployment(kafka_bootstrap, topic_prefix, tmp_path)
    w = WorkerProcess(bootstrap=kafka_bootstrap, data_dir=tmp_path / "w1", log_path=tmp_path / "w1.log",
                      env={"ONESTOP_TOPIC_PREFIX": topic_prefix, "ONESTOP_APP_ID": topic_prefix + "app",
                           "ONESTOP_PARTITIONS": "4", "ONESTOP_CLOCK_FILE": str(d.clock),
                           "ONESTOP_CLOCK_INTERVAL": "0.5", "ONESTOP_LOG_LEVEL": "info", "ONESTOP_TEST_MODE": "true",
                           "ONESTOP_API_TOKEN_FILE": str(token_file), "ONESTOP_METRICS_REQUIRE_TOKEN": "true"})
    d.workers.append(w)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def get(path: str, headers: dict | None = None) -> tuple[int, bytes]:
        return http(w.url + path, timeout=30, headers=headers)

    try:
        w.start()
        w.wait_ready(timeout=90)
        noisy = [_with_identity(line) for line in lines]
        # and a few refused ones, which keep their bytes in the DLQ (by design, see docs/reliability.md)
        refused = [line.replace(b'"specversion": "1.0"', b'"specversion": "9.9"') for line in noisy[:5]]
        d.publish(noisy + refused)

        wait_for(lambda: get("/healthz")[0] == 200 and figures_equal(lambda p: get(p, auth), expected), timeout=120,
                 interval=1.0, what="figures equal to the oracle (identity fields ignored)")
        # Replayed history raises its alerts once quiet for alert_settle_seconds (10 s of the worker's clock).
        d.clock.write_text((now + datetime.timedelta(seconds=30)).isoformat())
        wait_for(lambda: _topic_bytes(kafka_bootstrap, d.settings.alerts, 4)[1] > 0, timeout=60, interval=1.0,
                 what="alerts published")

        # -- access control ------------------------------------------------------------------------------------
        units = sorted(expected["year:2026"]["units"])
        guarded = ["/figures?period=year:2026", f"/api/units/{units[0]}/dossiers",
                   f"/api/units/{units[0]}/dossiers.csv", "/metrics", "/test/clock"]
        for path in guarded:
            assert get(path)[0] == 401, path
            assert get(path, {"Authorization": "Bearer wrong"})[0] == 401, path
            assert get(path, {"Authorization": f"Basic {TOKEN}"})[0] == 401, path
            assert get(path, auth)[0] == 200, path
        assert get("/healthz")[0] == 200 and get("/ready")[0] == 200  # probes stay open
        for path in ("/", "/router/", "/table/", "/table/dossiers/", "/stats/", "/graph/", "/signal/"):
            status, body = get(path, auth)
            # No Faust built-in page serves table values or internals; "/" is Faust's bare liveness answer.
            assert status == 404 or body.strip() in (b"", b'{"status":"OK"}'), (path, status, body[:200])

        # -- listeners -----------------------------------------------------------------------------------------
        assert {ip for ip, _port in listening_addresses(w.pid)} == {"127.0.0.1"}

        # -- no personal data out ------------------------------------------------------------------------------
        surfaces: dict[str, bytes] = {"/metrics": get("/metrics", auth)[1]}
        for period in PERIODS:
            surfaces[f"/figures?period={period}"] = get(f"/figures?period={period}", auth)[1]
        states = "within,due_soon,overdue,awaiting_supplement,awaiting_payment"
        listed = 0
        for unit in units:
            status, body = get(f"/api/units/{unit}/dossiers?state={states}&page_size=1000", auth)
            assert status == 200
            listed += json.loads(body)["total"]
            surfaces[f"/api/units/{unit}/dossiers"] = body
            surfaces[f"/api/units/{unit}/dossiers.csv"] = get(f"/api/units/{unit}/dossiers.csv?state={states}", auth)[1]
        assert listed > 0
        alerts, n_alerts = _topic_bytes(kafka_bootstrap, d.settings.alerts, 4)
        changelog, n_states = _topic_bytes(kafka_bootstrap, d.settings.changelog, 4)
        dlq, n_dlq = _topic_bytes(kafka_bootstrap, d.settings.dlq, 4)
        assert n_alerts > 0 and n_states > 0 and n_dlq == len(refused)
        surfaces["alerts topic"], surfaces["changelog topic (stored dossier states)"] = alerts, changelog
        surfaces["worker log"] = w.log_path.read_bytes()
        surfaces["worker data dir (RocksDB files)"] = b"".join(
            p.read_bytes() for p in (tmp_path / "w1").rglob("*") if p.is_file())
        leaks = {name: _leaks(blob) for name, blob in surfaces.items() if _leaks(blob)}
        assert leaks == {}
        assert _leaks(dlq)  # the publisher's own refused bytes, kept for diagnosis: the one exception
        assert TOKEN.encode() not in surfaces["worker log"]
    finally:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            print(w.log_tail())
        d.close()


@pytest.mark.broker
def test_a_worker_whose_token_file_is_missing_refuses_to_start(kafka_bootstrap, topic_prefix, tmp_path) -> None:
    w = WorkerProcess(bootstrap=kafka_bootstrap, data_dir=tmp_path / "w", log_path=tmp_path / "w.log",
                      env={"ONESTOP_TOPIC_PREFIX": topic_prefix, "ONESTOP_APP_ID": topic_prefix + "app",
                           "ONESTOP_API_TOKEN_FILE": str(tmp_path / "missing-token")})
    w.start()
    try:
        w.proc.wait(timeout=60)
    finally:
        w.stop()
    assert w.proc.returncode != 0
    assert "api_token_file: cannot read" in w.log_path.read_text(errors="replace")
