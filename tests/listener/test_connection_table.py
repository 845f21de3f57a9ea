"""The connection table's choices, with stand-in connections: who is displaced at the
cap, who is refused, how addresses are counted."""

from __future__ import annotations

from typing import Any

from wardgate.edge.connections import ConnectionTable, ListenerLimits, client_key


class Conn:
    def __init__(self, table: ConnectionTable, waiting: bool) -> None:
        self.table = table
        self.waiting = waiting
        self.dropped = False

    def drop(self) -> None:
        self.dropped = True
        self.table.release(self)  # type: ignore[arg-type]


def _admit(table: ConnectionTable, conn: Any, ip: str = "10.0.0.1") -> bool:
    return table.admit(conn, ip)


def test_at_the_cap_the_longest_waiting_connection_is_displaced() -> None:
    table = ConnectionTable(ListenerLimits(max_connections=3))
    busy = Conn(table, waiting=False)
    old_idle, new_idle = Conn(table, waiting=True), Conn(table, waiting=True)
    for conn in (busy, old_idle, new_idle):
        assert _admit(table, conn)
    table.touch(old_idle)  # finished a response just now: it is the newest waiting one
    assert _admit(table, Conn(table, waiting=True))
    assert new_idle.dropped and not old_idle.dropped and not busy.dropped
    assert len(table) == 3 and table.evicted == 1


def test_when_every_connection_is_busy_the_newcomer_is_refused() -> None:
    table = ConnectionTable(ListenerLimits(max_connections=2))
    busy = [Conn(table, waiting=False) for _ in range(2)]
    for conn in busy:
        assert _admit(table, conn)
    assert not _admit(table, Conn(table, waiting=True))
    assert table.refused == 1 and not any(c.dropped for c in busy)


def test_the_per_address_cap_counts_each_address_and_frees_on_release() -> None:
    table = ConnectionTable(ListenerLimits(max_connections=100, max_connections_per_ip=2))
    first, second = Conn(table, True), Conn(table, True)
    assert _admit(table, first, "10.0.0.1") and _admit(table, second, "10.0.0.1")
    assert not _admit(table, Conn(table, True), "10.0.0.1")
    assert _admit(table, Conn(table, True), "10.0.0.2")
    table.release(first)  # type: ignore[arg-type]
    table.release(first)  # type: ignore[arg-type]  # twice: counted once
    assert _admit(table, Conn(table, True), "10.0.0.1")
    assert not _admit(table, Conn(table, True), "10.0.0.1")


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7" == client_key("192.0.2.7")
