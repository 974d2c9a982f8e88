"""Baseline C: a kafka-python group consumer that only parses each record's JSON (a rough ceiling for Python)."""

from __future__ import annotations

import json
import sys
import time

from kafka import KafkaConsumer


def main(broker: str, topic: str, expect: int, group: str, out: str) -> None:
    consumer = KafkaConsumer(topic, bootstrap_servers=broker, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=True, session_timeout_ms=6000, heartbeat_interval_ms=1500,
                             max_poll_records=2000, fetch_max_bytes=16 * 1024 * 1024)
    marks: list[tuple[int, float]] = []
    step = max(1, expect // 50)
    n = 0
    deadline = time.monotonic() + 900
    while n < expect and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for rec in records:
                json.loads(rec.value)
                n += 1
                if n == 1 or n % step == 0 or n == expect:
                    marks.append((n, time.monotonic()))
    consumer.close()
    with open(out, "w") as fh:
        json.dump({"mode": "C", "expect": expect, "marks": marks}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
