"""How the runtime reaches the dossier table (streams/runtime/partitions.py ``OwnedPartitions._partition_db``): directly in the RocksDB
databases with keys encoded exactly as Faust's table encodes them, or through Faust's table for any other store.
The end-to-end proof that the changelog and the databases hold what Faust would have written is tests/test_stream.py
and the kill -9 / restart tests of tests/test_worker_smoke.py, which restore from both."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.runtime.partitions import _table_key
from streams.worker import build_app
from streams.runtime.clock import FrozenClock
from streams.runtime.processor import Processor
from streams.runtime.settings import WorkerSettings

CLOCK = FrozenClock(datetime.fromisoformat("2026-03-10T16:00:00+07:00"))


def _runtime(tmp_path, store):
    settings = WorkerSettings(broker="127.0.0.1:1", data_dir=tmp_path / store, store=store,
                              app_id=f"table-access-{store}")
    return build_app(settings, Processor(), CLOCK).onestop_runtime


def test_with_rocksdb_the_runtime_reads_and_writes_the_partition_databases_itself(tmp_path) -> None:
    runtime = _runtime(tmp_path, "rocksdb")
    store = runtime._partition_db()
    assert store is runtime.table.data and hasattr(store, "_db_for_partition")


def test_with_the_memory_store_every_access_goes_through_faust(tmp_path) -> None:
    assert _runtime(tmp_path, "memory")._partition_db() is None


@pytest.fixture(scope="module")
def rocksdb_store(tmp_path_factory):
    return _runtime(tmp_path_factory.mktemp("keys"), "rocksdb").table.data


@settings(max_examples=300, deadline=None)
@given(code=st.text(min_size=1, max_size=80))
def test_table_keys_are_encoded_exactly_as_faust_encodes_them(rocksdb_store, code) -> None:
    assert _table_key(code) == rocksdb_store._encode_key(code)
