"""The contract: docs/schema matches the models (regenerate with python -m qrad_agent.sync.contract docs/schema)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qrad_agent.sync.contract import ContractError, Kind, Topics, schemas

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schema"


def test_exported_schemas_are_current() -> None:
    for name, schema in schemas().items():
        on_disk = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
        assert on_disk == json.loads(json.dumps(schema)), f"docs/schema/{name}.json is stale"


def test_topics_and_response_topic_confinement() -> None:
    t = Topics("qrad/v1", "heater-1")
    assert Kind.ALARM.topic(t) == "qrad/v1/heater-1/alarms" and Kind.ALARM.retain
    assert t.response_topic("qrad/v1/heater-1/resp/platform") == "qrad/v1/heater-1/resp/platform"
    for hostile in ("qrad/v1/heater-2/resp", "qrad/v1/heater-1/resp/#", "qrad/v1/heater-1/respx", None):
        assert t.response_topic(hostile) == "qrad/v1/heater-1/resp"
    with pytest.raises(ContractError):
        Topics("qrad/+", "heater-1")


def test_deploy_acl_is_the_tested_acl() -> None:
    from qrad_agent.sync.devbroker import acl_text

    assert (SCHEMA_DIR.parents[1] / "deploy" / "mosquitto" / "acl.conf").read_text() == acl_text()
