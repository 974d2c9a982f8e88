"""Worker subprocesses for integration tests: start, wait for /ready, scrape, stop or kill by PID.

A real process (not an in-process app) is what lets a test kill -9 a worker mid-stream and restart it on the
same data directory, which is the failure the tallies must survive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from streams.tools.broker import free_port

REPO = Path(__file__).resolve().parents[1]


class WorkerDied(RuntimeError):
    pass


def http(url: str, *, data: bytes | None = None, timeout: float = 5.0,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) without raising on 4xx/5xx; loopback URLs only."""
    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def figures_difference(get: Callable[[str], tuple[int, bytes]], expected: dict[str, dict], limit: int = 8) -> list[str]:
    """What ``/figures`` shows differently from ``expected``, one line per differing count (at most ``limit``)."""
    out: list[str] = []
    for period, want in expected.items():
        status, body = get(f"/figures?period={period}")
        if status != 200:
            return [f"{period}: HTTP {status}"]
        got = json.loads(body)
        for scope in ("units", "provinces"):
            for name in sorted(set(want[scope]) | set(got[scope])):
                w, g = want[scope].get(name), got[scope].get(name)
                if w == g:
                    continue
                if w is None or g is None:
                    out.append(f"{period} {scope[:-1]} {name}: {'missing' if g is None else 'unexpected'}")
                else:
                    diffs = [f"{k} {g.get('counts', {}).get(k)} (want {v})" for k, v in w.get("counts", {}).items()
                             if g.get("counts", {}).get(k) != v]
                    out.append(f"{period} {scope[:-1]} {name}: " + (", ".join(diffs) or "scores differ"))
                if len(out) >= limit:
                    return out
    return out


def figures_equal(get: Callable[[str], tuple[int, bytes]], expected: dict[str, dict]) -> bool:
    """Whether ``/figures`` shows, for every period of ``expected`` (documents of `onestop score`), exactly its unit
    and province figures; ``get(path)`` returns (status, body)."""
    return not figures_difference(get, expected, limit=1)


class WorkerProcess:
    """``python -m streams.worker`` with its own data dir, web port and log file."""

    def __init__(
        self,
        *,
        bootstrap: str,
        data_dir: Path,
        log_path: Path,
        web_port: int | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.bootstrap = bootstrap
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.web_port = web_port or free_port()
        self.env = dict(env or {})
        self.args = tuple(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> "WorkerProcess":
        env = {**os.environ, **self.env}
        # The test double processors live in test modules: make them importable in the child.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env.setdefault("ONESTOP_SESSION_TIMEOUT", "6")
        env.setdefault("ONESTOP_LOOP", "uvloop")
        argv = [
            sys.executable, "-m", "streams.worker",
            "--broker", self.bootstrap,
            "--web-port", str(self.web_port),
            "--data-dir", str(self.data_dir),
            *self.args,
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n===== start {' '.join(argv)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until GET /ready answered 200; raises with the log tail if the worker dies or times out."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise WorkerDied(f"worker exited with {self.proc.returncode if self.proc else None}\n{self.log_tail()}")
            try:
                status, _ = http(self.url + "/ready", timeout=1.0)
                if status == 200:
                    return time.monotonic() - started
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready within {timeout:.0f} s\n{self.log_tail()}")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        return http(self.url + path, timeout=timeout)

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (status, body[:500])
        return json.loads(body)

    def post_json(self, path: str, doc: Any) -> Any:
        status, body = http(self.url + path, data=json.dumps(doc).encode(), timeout=30.0)
        assert status == 200, (status, body[:500])
        return json.loads(body)

    def metrics_text(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, (status, body[:500])
        return body.decode()

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM by PID, SIGKILL after ``grace``; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=grace)
        self._close_log()
        return proc.returncode

    def kill9(self) -> None:
        """The crash we must survive: no shutdown hooks, no final commit, no flush."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        # Faust prints wide ASCII tables on recovery; they only hide the lines that matter.
        kept = [ln for ln in text.splitlines() if not ln.lstrip().startswith(("|", "+", "〃"))]
        return "\n".join(kept[-lines:])

    def __enter__(self) -> "WorkerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket ``pid`` listens on, read from /proc (no ss/psutil needed)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, v6 in ((f"/proc/{pid}/net/tcp", False), (f"/proc/{pid}/net/tcp6", True)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            found.append((_ip(hex_ip, v6), int(hex_port, 16)))
    return found


def _ip(hex_ip: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_ip)
    if not v6:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    import ipaddress

    return str(ipaddress.IPv6Address(b"".join(words)))


def wait_for(predicate: Any, timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; its last value is in the timeout message."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f} s (last: {last!r})")
