"""The HAProxy peer name both the agent (-L) and the controller (peers section) use."""

from amphorae.contract.peers import peer_name


def test_peer_name_is_octavias() -> None:
    name = peer_name("a" * 36)
    assert "=" not in name and not name.startswith("-")
    assert len(name) == 27
    assert all(c.isalnum() or c in "_-" for c in name)


def test_peer_name_is_stable_and_per_amphora() -> None:
    assert peer_name("a" * 36) == peer_name("a" * 36) != peer_name("b" * 36)
