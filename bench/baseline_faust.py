"""Baselines A and B: the cheapest Faust agents that could stand in for the product's stream.

A decodes each event with Faust's own JSON codec (orjson when installed) and counts it; B adds one
changelog-backed table write per event, the naive stateful pattern. Both read the same pre-loaded topic as the
product, on the same broker, and stop by themselves once they have seen the expected number of events, writing
their timings to a JSON file the harness reads. Configuration comes from the environment so the harness can
start them exactly like the product's worker.
"""

from __future__ import annotations

import json
import os
import sys
import time

import mode.loop

mode.loop.use("uvloop")  # the same event loop the product's worker runs on

import faust  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from streams.compat.pacing import install_empty_fetch_pause  # noqa: E402

# The product's worker paces empty fetches against the embedded broker (streams/compat/pacing.py); the baselines get the
# same pacing so that neither side pays for the broker's quirk and the comparison is of the agents alone.
install_empty_fetch_pause()

MODE = os.environ["BENCH_MODE"]  # "A" or "B"
TOPIC = os.environ["BENCH_TOPIC"]
EXPECT = int(os.environ["BENCH_EXPECT"])
OUT = os.environ["BENCH_OUT"]
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "4"))

app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=f"kafka://{os.environ['BENCH_BROKER']}",
    store="rocksdb://",
    datadir=os.environ["BENCH_DATA_DIR"],
    topic_partitions=PARTITIONS,
    topic_disable_leader=True,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.5,
    consumer_auto_offset_reset="earliest",
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    autodiscover=False,
)
topic = app.topic(TOPIC, partitions=PARTITIONS, key_type=bytes, key_serializer="raw", value_serializer="json")
counts = app.Table("bench-counts", default=int, partitions=PARTITIONS) if MODE == "B" else None
marks: list[tuple[int, float]] = []
state = {"n": 0, "done": False}
STEP = max(1, EXPECT // 50)


def _finish() -> None:
    state["done"] = True
    with open(OUT + ".tmp", "w") as fh:
        json.dump({"mode": MODE, "expect": EXPECT, "marks": marks}, fh)
    os.replace(OUT + ".tmp", OUT)


@app.agent(topic, name=f"bench-{MODE}")
async def consume(stream):
    async for key, value in stream.items():
        # The decoded value is touched so the codec work cannot be skipped by laziness anywhere.
        if not isinstance(value, dict):
            continue
        if counts is not None:
            counts[value["subject"]] += 1
        n = state["n"] = state["n"] + 1
        if n == 1 or n % STEP == 0 or n == EXPECT:
            marks.append((n, time.monotonic()))
        if n == EXPECT and not state["done"]:
            _finish()


if __name__ == "__main__":
    app.main()
