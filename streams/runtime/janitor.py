"""Evicts consumer-group members that are certainly dead, for brokers that never expire them (noida-db).

A broker-side workaround, not a client-library patch: it only talks the Kafka admin protocol (kafka-python).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = ["GroupJanitor", "LOOPBACK", "advertised_url", "port_open"]

LOOPBACK = "127.0.0.1"

log = logging.getLogger(__name__)


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            return sock.connect_ex((host, port)) == 0
        except OSError:
            return False


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
        self.client_config = dict(client_config or {})  # SASL/TLS options (streams.runtime.security.kafka_client_config)
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
        if starting and own.port is not None and port_open(own.port, own.hostname or LOOPBACK):
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
        if port_open(parts.port, LOOPBACK):
            self._suspects.pop(member_id, None)
            return False
        self._suspects[member_id] = self._suspects.get(member_id, 0) + 1
        return self._suspects[member_id] >= 2
