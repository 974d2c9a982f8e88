"""Embedded Kafka-protocol broker (noida-db) run as a child process.

The single-machine default and the test suite both need a real broker without Docker or a JVM;
noida-db is the one that passed consumer groups, ListOffsets and Faust table recovery on these machines
(see docs in shared/spec/stack-notes.md). It always binds to loopback.
"""

from __future__ import annotations

import importlib.resources
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
from pathlib import Path
from threading import Thread

from streams.runtime.janitor import LOOPBACK, port_open

__all__ = ["BrokerStartError", "EmbeddedBroker", "broker_binary", "free_port"]

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
        if port_open(self.port):
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
            if port_open(self.port):
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
