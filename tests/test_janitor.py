"""GroupJanitor's judgement of which consumer-group members are dead, with the admin client replaced.

The end-to-end proofs (a worker restarted behind a crashed member gets ready, the churn scenarios) run on the
real broker; this pins the rule that decided a live worker's fate under load: a member advertising our own URL
is removed only if it is an id this process held before, or while we are starting.
"""

from __future__ import annotations

import json

import kafka
import pytest

from streams.runtime.janitor import GroupJanitor

OWN = "http://127.0.0.1:1"  # nothing listens on port 1: our own URL is judged by member id, never by the port
OTHER_DEAD = "http://127.0.0.1:2"


def _member(member_id: str, url: str) -> dict:
    return {"member_id": member_id, "group_instance_id": None,
            "member_metadata": b"\x00\x01" + json.dumps({"url": url}).encode()}


class FakeAdmin:
    members: list[dict] = []
    removed: list[str] = []

    def __init__(self, **_: object) -> None:
        pass

    def describe_groups(self, groups: list[str]) -> dict:
        return {groups[0]: {"members": list(FakeAdmin.members)}}

    def remove_group_members(self, group: str, members: list) -> None:
        FakeAdmin.removed += [m.member_id for m in members]

    def close(self) -> None:
        pass


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> type[FakeAdmin]:
    monkeypatch.setattr(kafka, "KafkaAdminClient", FakeAdmin)
    FakeAdmin.members, FakeAdmin.removed = [], []
    return FakeAdmin


@pytest.mark.parametrize("held,current,listed,removed", [
    # We hold "new"; the broker still lists the id our rejoin left behind: that one goes.
    (["old"], "new", ["old", "new"], ["old"]),
    # The broker already lists our next id while the client still reports the previous one: it must stay.
    ([], "old", ["old", "next"], []),
    # Not our URL and nothing listens there: removed only on the second sweep in a row (see below).
    ([], "me", ["me", "x"], []),
])
def test_members_with_our_url_are_removed_only_if_we_held_them(admin, held, current, listed, removed) -> None:
    janitor = GroupJanitor("127.0.0.1:9", "g", OWN)
    janitor._mine.update(held)
    admin.members = [_member(m, OTHER_DEAD if m == "x" else OWN) for m in listed]
    assert janitor.sweep(lambda: current) == removed
    assert admin.removed == removed


def test_at_start_every_member_with_our_url_is_a_past_process(admin) -> None:
    janitor = GroupJanitor("127.0.0.1:9", "g", OWN)
    admin.members = [_member("a", OWN), _member("b", OWN), _member("c", "http://10.0.0.7:6066")]
    assert janitor.sweep(starting=True) == ["a", "b"]
    # Should a removal not have taken, the next sweeps know those ids as ours and try again.
    assert janitor.sweep(lambda: "d") == ["a", "b"]


def test_a_member_on_a_dead_loopback_port_goes_on_the_second_sweep(admin) -> None:
    janitor = GroupJanitor("127.0.0.1:9", "g", OWN)
    admin.members = [_member("me", OWN), _member("x", OTHER_DEAD)]
    assert janitor.sweep(lambda: "me") == []
    assert janitor.sweep(lambda: "me") == ["x"]
