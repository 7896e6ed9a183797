"""A unit node's document: what the unit agent and the machine agent write, read back the same."""

from __future__ import annotations

import pytest

from ensemble_orchestra.state.errors import StateCorruptError
from ensemble_orchestra.state.units import RelationError, UnitRecord


@pytest.mark.parametrize(
    "record",
    [
        UnitRecord("web/0"),
        UnitRecord("web/0", "install-error", "local:bookworm/web-1", "install", ("E: no such package",)),
        UnitRecord("web/0", "started", open_ports=("80/tcp", "443/tcp"), private_address="10.0.0.2"),
        UnitRecord("web/0", relation_errors={"db:3": RelationError("db", "mysql", "db-relation-changed", "mysql/0")}),
        UnitRecord("web/0", deploy_error="GET http://storage/b.zip answered 404"),
    ],
)
def test_round_trip(record: UnitRecord) -> None:
    assert UnitRecord.from_document(record.name, record.to_document()) == record


def test_deploy_error_is_written_only_when_there_is_one() -> None:
    """Nodes written before the field existed, and every unit deployed without trouble, read the same."""
    assert "deploy-error" not in UnitRecord("web/0").to_document()
    assert UnitRecord.from_document("web/0", {"agent-state": "pending"}).deploy_error is None


def test_an_unknown_state_is_refused_naming_the_node() -> None:
    with pytest.raises(StateCorruptError, match="/units/web-0.*unknown agent-state 'flying'"):
        UnitRecord.from_document("web/0", {"agent-state": "flying"})
