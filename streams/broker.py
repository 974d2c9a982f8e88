"""Embedded Kafka-protocol broker (noida-db) run as a child process.

The single-machine default and the test suite both need a real broker without Docker or a JVM;
noida-db is the one that passed consumer groups, ListOffsets and Faust table recovery on these machines
(see docs in shared/spec/stack-notes.md). It always binds to loopback.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from threading import Thread
from urllib.parse import urlsplit

__all__ = ["BrokerStartError", "EmbeddedBroker", "GroupJanitor", "broker_binary", "free_port"]

LOOPBACK = "127.0.0.1"

log = logging.getLogger(__name__)


class BrokerStartError(RuntimeError):
    """The broker process exited or never accepted connections."""


def free_port() -> int:
    """A loopback port the kernel just handed out (racy by nature, but the window is tiny)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def broker_binary() -> Path:
    """Path of the noida-db executable shipped in the wheel.

    Wheels do not always keep the executable bit, so it is restored here rather than asking users to.
    """
    path = Path(str(importlib.resources.files("noida_db") / "noida-db"))
    if not path.is_file():
        raise BrokerStartError(f"noida-db binary not found at {path}; is noida-db installed?")
    mode = path.stat().st_mode
    if mode & stat.S_IXUSR == 0:
        os.chmod(path, 0o755)
    return path


def _port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            return sock.connect_ex((host, port)) == 0
        except OSError:
            return False


class EmbeddedBroker:
    """A noida-db Kafka listener on 127.0.0.1, owned by this process and stopped by PID.

    Data lives in ``data_dir`` (a JSON snapshot), so a broker restarted on the same directory keeps its topics
    and records.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        *,
        start_timeout: float = 30.0,
    ) -> None:
        self._own_tmp = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="noida-"))
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        # The binary prints a harmless GLIBC "weak version" warning on every start; we keep the tail only
        # to explain failures, never to decide them.
        self._stderr_tail: deque[str] = deque(maxlen=40)
        self._reader: Thread | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail)

    def start(self) -> "EmbeddedBroker":
        if self.process is not None:
            return self
        if _port_open(self.port):
            raise BrokerStartError(f"port {self.port} on {LOOPBACK} is already in use; pick another or port=None")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(broker_binary()),
            "start",
            "--host",
            LOOPBACK,
            "--only",
            "kafka",
            "--kafka-port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Own process group: a Ctrl-C in the parent's terminal must not race our orderly stop.
            start_new_session=True,
        )
        self._reader = Thread(target=self._drain_stderr, name=f"noida-stderr-{self.port}", daemon=True)
        self._reader.start()
        self._wait_until_listening()
        return self

    def _drain_stderr(self) -> None:
        proc = self.process
        assert proc is not None and proc.stderr is not None
        for raw in proc.stderr:
            self._stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                if self._reader:
                    self._reader.join(timeout=1)
                raise BrokerStartError(
                    f"noida-db exited with code {code} before listening on {self.bootstrap}.\n"
                    f"stderr tail:\n{self.stderr_tail()}"
                )
            if _port_open(self.port):
                # Someone else may have grabbed the port meanwhile; make sure our child is the one still up.
                time.sleep(0.05)
                if self.process.poll() is None:
                    return
                continue
            time.sleep(0.05)
        self.stop()
        raise BrokerStartError(
            f"noida-db did not accept connections on {self.bootstrap} within {self.start_timeout:.0f} s.\n"
            f"stderr tail:\n{self.stderr_tail()}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM by PID so the snapshot is written, SIGKILL if it hangs past ``grace``."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=grace)
            except ProcessLookupError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        self.process = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_tmp:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<EmbeddedBroker {self.bootstrap} pid={self.pid} dir={self.data_dir}>"


def advertised_url(member_metadata: object) -> str | None:
    """The web URL a Faust member advertises in its subscription user data (a JSON document)."""
    if isinstance(member_metadata, (bytes, bytearray)):
        text = bytes(member_metadata).decode("latin-1")
    else:
        text = str(member_metadata or "")
    start = text.find('{"')
    if start < 0:
        return None
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    url = doc.get("url") if isinstance(doc, dict) else None
    return url if isinstance(url, str) else None


class GroupJanitor:
    """Removes consumer-group members that are certainly dead.

    noida-db never expires a member whose session timed out (checked for minutes: a kill -9'd worker, or the
    old member id a worker leaves behind when it rejoins after IllegalGeneration, stays in the group), and its
    JoinGroup then elects that ghost as leader, so the group loops in a rebalance forever. Apache Kafka expires
    such members itself; there this only shortens the wait. A member is removed only when it is provably gone:

    * it advertises our own URL and is a member id we held before (a past incarnation of this process, or the id
      a rejoin left behind), or any member with our URL when we are starting and have not joined yet, or
    * it advertises a loopback URL on which nothing has listened for two sweeps in a row (Faust serves its web
      port before joining and leaves the group before closing it, so a live member always answers).

    Members on other hosts and static members are never touched.
    """

    def __init__(self, bootstrap: str, group: str, own_url: str, client_config: dict | None = None) -> None:
        self.bootstrap = bootstrap
        self.client_config = dict(client_config or {})  # SASL/TLS options (streams.security.kafka_client_config)
        self.group = group
        self.own_url = own_url
        self._suspects: dict[str, int] = {}
        # Member ids this process has held. A member with our URL that is not among them may be our own newest
        # id, which the broker can list before the client has taken it over; removing it cut a live worker out of
        # its group while it kept processing, and forced yet another rebalance.
        self._mine: set[str] = set()
        # kafka-python cannot parse Faust's assignor metadata and warns about it on every describe.
        logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)

    def sweep(self, whoami: Callable[[], str | None] | None = None, *, starting: bool = False) -> list[str]:
        """One pass; ``whoami`` returns our current member id (None while we are between generations)."""
        from kafka import KafkaAdminClient
        from kafka.admin import MemberToRemove

        own = urlsplit(self.own_url)
        if starting and own.port is not None and _port_open(own.port, own.hostname or LOOPBACK):
            return []  # someone serves our URL right now: not ours to judge
        me = whoami() if whoami else None
        if me:
            self._mine.add(me)
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.group}-janitor",
                                 **self.client_config)
        try:
            described = admin.describe_groups([self.group]).get(self.group) or {}
            if whoami is not None and whoami() != me:
                return []  # we rejoined meanwhile: the listing may show our new id as a stranger
            ghosts = []
            seen = set()
            for member in described.get("members") or []:
                member_id = member["member_id"]
                seen.add(member_id)
                if member.get("group_instance_id") or member_id == me:
                    continue
                url = advertised_url(member.get("member_metadata"))
                if url is None:
                    continue
                if url == self.own_url:
                    if starting:
                        self._mine.add(member_id)  # a past process of ours: retried by later sweeps if need be
                    if member_id in self._mine:
                        ghosts.append(member_id)
                elif self._dead_on_loopback(member_id, url):
                    ghosts.append(member_id)
            self._suspects = {m: n for m, n in self._suspects.items() if m in seen}
            if ghosts:
                admin.remove_group_members(self.group, [MemberToRemove(member_id=g) for g in ghosts])
                log.warning("removed %d dead member(s) from consumer group %s", len(ghosts), self.group)
                for g in ghosts:
                    self._suspects.pop(g, None)
            return ghosts
        finally:
            admin.close()

    def _dead_on_loopback(self, member_id: str, url: str) -> bool:
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
            return False
        if _port_open(parts.port, LOOPBACK):
            self._suspects.pop(member_id, None)
            return False
        self._suspects[member_id] = self._suspects.get(member_id, 0) + 1
        return self._suspects[member_id] >= 2
