"""Which dossiers the local table may hold ahead of the changelog, so a crashed worker can keep its local state.

A dossier is written to the partition's RocksDB database at once but to the changelog through the producer, so a
``kill -9`` can leave the local copy holding states the changelog never got. Throwing the local state away after
every crash is safe but costs a full changelog read (minutes at a million dossiers). Instead, the codes a batch is
about to write are appended to this journal *before* the writes; every few seconds the journal rotates and, once
every changelog record sent before the rotation is on the broker (the last one sent to each partition is
acknowledged: a partition's records are acknowledged in order), the older file is deleted. After a crash, the
journal therefore names every dossier whose changelog record may be missing; the worker keeps its local state,
lets Faust read the changelog's tail as after a clean stop, then sends those dossiers' local states to the
changelog again. Local state and changelog are then the same, as after a clean stop.

Plain files, one ``partition<TAB>"code"`` line per write (the code as a JSON string, so no key can break a line),
appended with one ``write`` per batch: a killed process loses nothing that ``write`` returned (the page cache
survives it, as RocksDB's own log does).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

FILES = ("writes-a", "writes-b")
CARRIED = "carried"  # entries of a crash not repaired yet: partitions this worker did not own after the restart


def read_entries(path: Path) -> dict[int, set[str]]:
    """The ``{partition: codes}`` a journal file names; a line cut short by a crash is left out (its batch was
    never written: the journal is appended before the table)."""
    out: dict[int, set[str]] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    for line in data.split(b"\n")[:-1]:  # the part after the last newline is incomplete or empty
        partition, sep, quoted = line.partition(b"\t")
        try:
            code = json.loads(quoted) if sep and partition.isdigit() else None
        except ValueError:
            code = None
        if isinstance(code, str) and code:
            out.setdefault(int(partition), set()).add(code)
    return out


def _quote(code: str) -> str:
    return json.dumps(code, ensure_ascii=False)


def _merge(into: dict[int, set[str]], more: dict[int, set[str]]) -> None:
    for p, codes in more.items():
        into.setdefault(p, set()).update(codes)


class WriteJournal:
    """The journal of one worker's data directory. Not thread-safe: the event loop is its only user."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._active = 0
        self._fd: int | None = None
        self.pending: dict[int, set[str]] = {}  # a crash's dossiers still to send to the changelog

    # -- start ------------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the previous run kept a journal (a run of an older version did not: its state is discarded)."""
        return any((self.directory / n).exists() for n in (*FILES, CARRIED))

    def holds_entries(self) -> bool:
        """Whether any journal file names a dossier (a run that wrote at least once and did not stop cleanly)."""
        return any(read_entries(self.directory / n) for n in (*FILES, CARRIED))

    def open(self, crashed: bool) -> dict[int, set[str]]:
        """Start a run. After a crash the previous run's entries become ``pending`` (kept in one file until they
        are repaired); after a clean stop every changelog record was flushed, so they are dropped. Entries carried
        from an earlier crash stay pending either way: their partitions' local tables were never repaired."""
        entries = read_entries(self.directory / CARRIED)
        if crashed:
            for name in FILES:
                _merge(entries, read_entries(self.directory / name))
            self._write_carried(entries)
        for name in FILES:
            (self.directory / name).unlink(missing_ok=True)
        self.pending = entries
        self._reopen()
        return entries

    def discard(self) -> None:
        """The local state was discarded: nothing it held needs repairing."""
        for name in (CARRIED, *FILES):
            (self.directory / name).unlink(missing_ok=True)
        self.pending = {}

    # -- while running ----------------------------------------------------------------------------------------
    def record(self, writes: Iterable[tuple[int, str]]) -> None:
        """Append the (partition, code) pairs a batch is about to write; call before writing the table."""
        data = "".join(f"{p}\t{_quote(code)}\n" for p, code in writes).encode()
        if data:
            if self._fd is None:
                self._reopen()
            os.write(self._fd, data)

    def rotate(self) -> Path:
        """Switch to the other file; returns the one to delete once what was sent before is acknowledged. The
        other file is appended to, not emptied: a checkpoint that never finished may have left entries there."""
        old = self.directory / FILES[self._active]
        self._active = 1 - self._active
        self._reopen()
        return old

    @staticmethod
    def release(old: Path) -> None:
        """Every changelog record sent before ``old`` was rotated out is on the broker: its entries are moot."""
        old.unlink(missing_ok=True)

    def repaired(self, partitions: Iterable[int]) -> None:
        """These partitions' pending dossiers were sent to the changelog and flushed."""
        for p in partitions:
            self.pending.pop(p, None)
        self._write_carried(self.pending)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- internals --------------------------------------------------------------------------------------------
    def _reopen(self) -> None:
        self.close()
        self._fd = os.open(self.directory / FILES[self._active], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _write_carried(self, entries: dict[int, set[str]]) -> None:
        path = self.directory / CARRIED
        if not entries:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(CARRIED + ".tmp")
        tmp.write_text("".join(f"{p}\t{_quote(c)}\n" for p in sorted(entries) for c in sorted(entries[p])),
                       encoding="utf-8")
        os.replace(tmp, path)
