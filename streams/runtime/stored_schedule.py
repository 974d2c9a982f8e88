"""A partition's deadline schedule kept in a RocksDB database instead of Python objects.

Every open dossier has a next check, and a ``DeadlineSchedule`` pays ~215 bytes of Python objects for it (its code,
a datetime, a heap tuple and a dict entry) and up to ~440 with the stale entries its lazy deletion allows
(``bench/schedule_memory.py``). With a million open dossiers that alone exceeds the memory goal of 300 bytes per
dossier (docs/benchmarks.md). ``StoredSchedule`` has the same methods and keeps the entries on disk:

- ``t`` + the check's instant (8 bytes, big-endian microseconds since the epoch; events are held to 2000-2100) +
  the code: RocksDB's key order is the order checks fall due in, so ``pop_due`` is one forward scan, from the
  lower bound of the earliest check that Python keeps;
- ``c`` + the code -> the instant: the entry to delete when a dossier is rescheduled or ends.

The database is scratch space, not state: the worker rebuilds a partition's schedule from its dossier table
whenever it takes the partition, so a schedule starts empty, writes without a write-ahead log, and is deleted when
it is closed (or, after a crash, when the next worker starts; see ``clear_abandoned``). Python keeps only a count
and that lower bound, which lets ``pop_due`` answer "nothing due" without touching RocksDB, and start its scan
after the deletion markers of the entries popped before.

``StoredAnnouncements`` keeps the processor's memory of announced alerts the same way, one database per process.
"""

from __future__ import annotations

import os
import shutil
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

import rocksdict

from models.dossier import Alert
from models.evaluation import alert_suffixes, alerts_from_suffixes

__all__ = ["StoredAnnouncements", "StoredSchedule", "announcements_path", "clear_abandoned", "schedule_path"]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)
_INSTANT = struct.Struct(">Q")
_NEVER = 1 << 64  # above every packed instant: "no entry"
LOAD_BATCH = 2048  # entries ``load`` writes at once

# One cache for every schedule of the process: their reads are few (a get per reschedule, a scan per pop), and
# RocksDB would otherwise give each database its own 8 MiB block cache by default.
_shared_cache: rocksdict.Cache | None = None


def _options(write_buffer_mib: int) -> rocksdict.Options:
    global _shared_cache
    if _shared_cache is None:
        _shared_cache = rocksdict.Cache(4 * 2**20)
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(write_buffer_mib * 2**20)
    options.set_max_write_buffer_number(2)
    options.set_max_open_files(64)
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(_shared_cache)
    options.set_block_based_table_factory(table)
    return options


def _open_scratch(path: Path, write_buffer_mib: int) -> rocksdict.Rdict:
    """A new, empty scratch database at ``path``, written without a write-ahead log: its contents are rebuilt or
    forgotten with the process, so a previous process's are never read."""
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = rocksdict.Rdict(str(path), options=_options(write_buffer_mib))
    writes = rocksdict.WriteOptions()
    writes.disable_wal = True
    db.set_write_options(writes)
    return db


def _delete_scratch(db: rocksdict.Rdict, path: Path) -> None:
    db.close()
    shutil.rmtree(path, ignore_errors=True)


def _unpack(raw: bytes) -> datetime:
    return EPOCH + timedelta(microseconds=_INSTANT.unpack(raw)[0])


def schedule_path(root: Path, partition: int, serial: int) -> Path:
    """A new schedule's directory, named after this process so that another one never removes it."""
    return Path(root) / f"{_process_token(os.getpid())}-p{partition}-{serial}"


def announcements_path(root: Path, serial: int) -> Path:
    """A new ``StoredAnnouncements``' directory; ``clear_abandoned`` treats it as a schedule's."""
    return Path(root) / f"{_process_token(os.getpid())}-pall-announced{serial}"


def clear_abandoned(root: Path) -> list[Path]:
    """Remove the schedules of processes that are gone (crashed, or stopped without closing them).

    A live process's schedules are left alone, so a second worker started on the same data directory by mistake
    cannot delete the first one's databases from under it (it fails on the table's RocksDB lock instead). A
    process is named by its PID and its start time, because a worker restarted in a container usually gets the
    PID its previous run had.
    """
    removed: list[Path] = []
    for entry in Path(root).glob("*-p*-*"):
        token = entry.name.split("-", 1)[0]
        pid = token.split(".", 1)[0]
        if pid.isdigit() and not token.endswith(".gone") and token == _process_token(int(pid)):
            continue  # a live process, this one included
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _process_token(pid: int) -> str:
    """``PID.start-time`` of a live process (clock ticks since boot, from /proc), ``PID.gone`` if it is not
    running; without /proc, ``PID.0`` for any live one."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
        return f"{pid}.{fields[19]}"  # field 22 of proc(5), the 20th after the name
    except FileNotFoundError:
        return f"{pid}.gone" if os.path.isdir("/proc/self") else _signalled(pid)
    except (OSError, IndexError):
        return _signalled(pid)


def _signalled(pid: int) -> str:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"{pid}.gone"
    except PermissionError:  # another user's process
        pass
    return f"{pid}.0"


class StoredSchedule:
    """The methods of ``streams.runtime.clock.DeadlineSchedule``, with the entries in a scratch RocksDB database at ``path``.

    Instants come back in UTC; they are the same instants that were scheduled.
    """

    __slots__ = ("evaluated_at", "path", "_db", "_count", "_floor", "_loading", "_loading_size")

    def __init__(self, evaluated_at: datetime, path: Path, write_buffer_mib: int = 2) -> None:
        self.evaluated_at = evaluated_at
        self.path = Path(path)
        self._db = _open_scratch(self.path, write_buffer_mib)
        self._count = 0
        self._floor = _NEVER  # no entry is earlier than this (packed as an int)
        self._loading: rocksdict.WriteBatch | None = None  # entries from ``load`` not yet written
        self._loading_size = 0

    def load(self, code: str, when: datetime) -> None:
        """Schedule a code that is not scheduled yet, as a rebuild from the table does for each dossier once.

        Entries are written in batches (2.9 µs each instead of 8.9 µs through ``schedule``, which must first look
        for the code's previous check): ~6 s less in the rebuild of a million open dossiers. Any other call
        writes the pending batch first.
        """
        at = (when - EPOCH) // MICROSECOND
        new = _INSTANT.pack(at)
        name = code.encode()
        if self._loading is None:
            self._loading = rocksdict.WriteBatch(raw_mode=True)
        self._loading.put(b"t" + new + name, b"")
        self._loading.put(b"c" + name, new)
        self._loading_size += 1
        self._count += 1
        if at < self._floor:
            self._floor = at
        if self._loading_size >= LOAD_BATCH:
            self._write_loaded()

    def _write_loaded(self) -> None:
        """Write the pending batch of ``load``; callers check that there is one (``schedule`` is on every event)."""
        self._db.write(self._loading)
        self._loading = None
        self._loading_size = 0

    def schedule(self, code: str, when: datetime | None) -> None:
        if self._loading is not None:
            self._write_loaded()
        db = self._db
        name = code.encode()
        ref = b"c" + name
        old = db.get(ref)
        if when is None:
            if old is None:
                return
            db.delete(b"t" + old + name)
            db.delete(ref)
            self._count -= 1
            return
        at = (when - EPOCH) // MICROSECOND
        new = _INSTANT.pack(at)
        if old == new:
            return
        if old is None:
            self._count += 1
        else:
            db.delete(b"t" + old + name)
        db.put(b"t" + new + name, b"")
        db.put(ref, new)
        if at < self._floor:
            self._floor = at

    def pop_due(self, now: datetime) -> list[str]:
        """Codes whose check is at or before ``now``, earliest first; each is unscheduled."""
        limit = (now - EPOCH) // MICROSECOND
        if limit < self._floor:
            return []
        if self._loading is not None:
            self._write_loaded()
        db = self._db
        due: list[tuple[bytes, bytes]] = []
        it = db.iter()
        # From the lower bound, not from the first key: the entries popped before are deletion markers until
        # RocksDB compacts them, and a scan from the start would step over every one of them on every pop.
        it.seek(b"t" + _INSTANT.pack(self._floor))
        floor = _NEVER
        while it.valid():
            key = it.key()
            if key[:1] != b"t":
                break
            at = _INSTANT.unpack(key[1:9])[0]
            if at > limit:
                floor = at
                break
            due.append((key, key[9:]))
            it.next()
        del it
        for key, name in due:
            db.delete(key)
            db.delete(b"c" + name)
        self._count -= len(due)
        self._floor = floor
        return [name.decode() for _, name in due]

    def next_due(self) -> datetime | None:
        if self._floor == _NEVER:  # nothing was scheduled since the schedule was last found empty
            return None
        if self._loading is not None:
            self._write_loaded()
        it = self._db.iter()
        it.seek(b"t" + _INSTANT.pack(self._floor))
        if not it.valid() or it.key()[:1] != b"t":
            self._floor = _NEVER
            return None
        raw = it.key()[1:9]
        self._floor = _INSTANT.unpack(raw)[0]
        return _unpack(raw)

    def codes(self) -> list[str]:
        if self._loading is not None:
            self._write_loaded()
        out: list[str] = []
        it = self._db.iter()
        it.seek(b"c")
        while it.valid():
            key = it.key()
            if key[:1] != b"c":
                break
            out.append(key[1:].decode())
            it.next()
        return out

    def scheduled_at(self, code: str) -> datetime | None:
        if self._loading is not None:
            self._write_loaded()
        raw = self._db.get(b"c" + code.encode())
        return None if raw is None else _unpack(raw)

    def close(self) -> None:
        """Close and delete the database; the schedule must not be used afterwards."""
        if self._db is not None:
            self._loading = None
            _delete_scratch(self._db, self.path)
            self._db = None

    def __len__(self) -> int:
        return self._count


_SEPARATOR = "\x1f"  # between a dossier's alerts, whose stored ids hold kinds, dates and colons only


class StoredAnnouncements:
    """The alerts a worker has announced, per dossier, in a scratch RocksDB database at ``path``: the ``get``,
    ``__setitem__`` and ``pop`` of the dictionary ``streams.runtime.processor.Processor`` keeps them in otherwise.

    In that dictionary a dossier with an announced alert costs ~665 bytes of RSS (a frozenset of ``Alert`` tuples
    and their ids, and the entry), here ~72 (``bench/announced_memory.py``, 156 k of 200 k one-event dossiers
    announced at their data set's end): a worker announcing the alerts of a province whose open dossiers are
    mostly overdue held more for them than for everything else it keeps. Here each is one key (the code) and one
    value (its alert ids without the code, as the stored rows keep them: ``models.dossier.alert_suffixes``).

    Like the dictionary, it lives as long as the process and starts empty: a restarted worker announces again
    what is active (ids are stable; consumers de-duplicate). The database has no write-ahead log and is deleted
    when closed, or by the next start after a crash (``clear_abandoned``).
    """

    __slots__ = ("path", "_db")

    def __init__(self, path: Path, write_buffer_mib: int = 1) -> None:
        self.path = Path(path)
        self._db = _open_scratch(self.path, write_buffer_mib)

    def get(self, code: str, default: frozenset[Alert] = frozenset()) -> frozenset[Alert]:
        raw = self._db.get(code.encode())
        return default if raw is None else alerts_from_suffixes(code, tuple(raw.decode().split(_SEPARATOR)))

    def __setitem__(self, code: str, alerts: frozenset[Alert]) -> None:
        self._db[code.encode()] = _SEPARATOR.join(alert_suffixes(code, alerts)).encode()

    def pop(self, code: str, default: None = None) -> None:
        """Forget the dossier's alerts (the dictionary's ``pop``, without the value, which no caller uses)."""
        key = code.encode()
        if self._db.get(key) is not None:  # no deletion marker for the many dossiers that never had an alert
            del self._db[key]
        return default

    def close(self) -> None:
        if self._db is not None:
            _delete_scratch(self._db, self.path)
            self._db = None
