"""Commands: validation, expiry, replay, signatures, request/response over the broker, and a hypothesis fuzz."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrad_agent.sync.client import SyncClient
from qrad_agent.sync.commands import CommandHandler, CommandRejected, Reason, ReplayWindow
from qrad_agent.sync.outbox import Outbox
from qrad_agent.sync.signing import Verifier, load_public_key, sign

NOW = 1_800_000_000.0


class FakeAgent:
    """The agent side of the command Protocol: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def set_setpoint(self, mode: str, setpoint_c: float) -> None:
        self.calls.append(("set_setpoint", (mode, setpoint_c)))

    async def set_mode(self, mode: str) -> None:
        self.calls.append(("set_mode", mode))

    async def set_schedule(self, rules: list[dict[str, str]]) -> None:
        self.calls.append(("set_schedule", rules))

    async def submit_job(self, manifest: Any) -> None:
        self.calls.append(("submit_job", manifest.job_id))

    async def cancel_job(self, job_id: str) -> None:
        if job_id == "unknown":
            raise CommandRejected("no such job")
        self.calls.append(("cancel_job", job_id))

    async def diagnostics(self) -> dict[str, Any]:
        self.calls.append(("diagnostics", None))
        return {"uptime_s": 1.0}

    async def reset_alarm(self, code: str) -> None:
        self.calls.append(("reset_alarm", code))


def manifest(**over: Any) -> dict[str, Any]:
    return {"job_id": "job-1", "device_id": "heater-1", "nonce": "n" * 32, "image_sha256": "a" * 64, "argv": ["render", "--frame", "7"], "cpus": 4.0,
            "max_runtime_s": 3600.0, "checkpoint": True, "not_after": NOW + 3600, **over}


def cmd(name: str, ident: str = "c1", **fields: Any) -> dict[str, Any]:
    return {"v": 1, "command": name, "command_id": ident, "issued_at": NOW - 1, "expires_at": NOW + 60, **fields}


def signed(key, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` addressed to heater-1 and signed as a whole, as the platform signs commands."""
    document = {"device_id": "heater-1", **document}
    return {**document, "signature": sign(key, document)}


def handler(tmp_path, platform_key, clock=lambda: NOW) -> tuple[CommandHandler, FakeAgent]:
    agent = FakeAgent()
    verifier = Verifier(load_public_key(platform_key[1]))
    return CommandHandler(agent, ReplayWindow(tmp_path / "replay.db", 86400), verifier, clock,
                          device_id="heater-1"), agent


async def answer(h: CommandHandler, document: Any) -> Any:
    return await h.handle(document if isinstance(document, bytes) else json.dumps(document).encode())


async def test_valid_commands_apply(tmp_path, platform_key) -> None:
    h, agent = handler(tmp_path, platform_key)
    key = platform_key[0]
    ok = [cmd("set_setpoint", "a", mode="comfort", setpoint_c=21.5), cmd("set_mode", "b", mode="eco"),
          cmd("set_schedule", "c", rules=[{"days": "mon-fri", "start": "06:30", "mode": "comfort"}]),
          signed(key, cmd("submit_job", "d", manifest=manifest())),
          cmd("cancel_job", "e", job_id="job-1"), cmd("request_diagnostics", "f")]
    ok.append(signed(key, cmd("reset_alarm", "g", code="overheat")))
    for document in ok:
        response = await answer(h, document)
        assert response.ok, response
    assert [c[0] for c in agent.calls] == ["set_setpoint", "set_mode", "set_schedule", "submit_job", "cancel_job",
                                           "diagnostics", "reset_alarm"]


async def test_bad_commands_get_reasons_and_change_nothing(tmp_path, platform_key) -> None:
    h, agent = handler(tmp_path, platform_key)
    other = __import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["x"]).Ed25519PrivateKey.generate()
    cases = [
        (b"{not json", Reason.MALFORMED_JSON), (b"\xff\xfe", Reason.MALFORMED_JSON),
        (cmd("format_disk"), Reason.UNKNOWN_COMMAND), ([1, 2], Reason.UNKNOWN_COMMAND),
        (cmd("set_setpoint", mode="comfort", setpoint_c="21"), Reason.INVALID),
        (cmd("set_setpoint", mode="comfort", setpoint_c=99), Reason.INVALID),
        (cmd("set_mode", mode="turbo"), Reason.INVALID),
        (cmd("set_mode", mode="eco", extra=1), Reason.INVALID),
        ({**cmd("set_mode", mode="eco"), "expires_at": NOW - 1}, Reason.EXPIRED),
        ({**cmd("set_mode", mode="eco"), "issued_at": NOW - 90000, "expires_at": None}, Reason.EXPIRED),
        (signed(other, cmd("submit_job", manifest=manifest())), Reason.BAD_SIGNATURE),
        ({**signed(platform_key[0], cmd("submit_job", manifest=manifest())), "manifest": manifest(cpus=64.0)},
         Reason.BAD_SIGNATURE),
        ({**signed(platform_key[0], cmd("submit_job", manifest=manifest())), "signature": "not base64!"},
         Reason.BAD_SIGNATURE),
        (cmd("submit_job", manifest=manifest(), signature=sign(platform_key[0], manifest())), Reason.INVALID),
        (signed(other, cmd("reset_alarm", code="overheat")), Reason.BAD_SIGNATURE),
        (signed(platform_key[0], {**cmd("set_mode", mode="eco"), "device_id": "heater-2"}), Reason.INVALID),
        ({**cmd("set_mode", mode="eco"), "issued_at": float("nan")}, Reason.INVALID),
        (b"x" * 70000, Reason.TOO_LARGE),
    ]
    for document, reason in cases:
        response = await answer(h, document)
        assert (response.ok, response.reason) == (False, reason), (document, response)
    assert agent.calls == [] and h.replay.ids() == set()
    assert (await answer(h, cmd("cancel_job", "r1", job_id="unknown"))).reason == Reason.REJECTED
    first = await answer(h, cmd("set_mode", "dup", mode="eco"))
    again = await answer(h, cmd("set_mode", "dup", mode="off"))
    assert first.ok and (again.ok, again.reason) == (False, Reason.REPLAYED)
    assert agent.calls == [("set_mode", "eco")]


async def test_a_signed_manifest_in_a_new_envelope_is_refused(tmp_path, platform_key) -> None:
    """The signature covers the command id, issued_at, expires_at and the addressee, not only the payload:
    a signed submit_job cannot be re-sent as a fresh command, sent to another heater or kept alive longer."""
    h, agent = handler(tmp_path, platform_key)
    original = signed(platform_key[0], cmd("submit_job", "job-cmd-1", manifest=manifest()))
    assert (await answer(h, original)).ok
    forgeries = [{**original, "command_id": "job-cmd-2"}, {**original, "issued_at": NOW},
                 {**original, "command_id": "job-cmd-3", "expires_at": NOW + 3000},
                 {**original, "command_id": "job-cmd-4", "device_id": "heater-2"}]
    for forged in forgeries:
        response = await answer(h, forged)
        assert not response.ok and response.reason in (Reason.BAD_SIGNATURE, Reason.INVALID), (forged, response)
    assert (await answer(h, original)).reason == Reason.REPLAYED
    assert agent.calls == [("submit_job", "job-1")]


async def test_a_command_from_the_future_stays_refused_for_its_whole_window(tmp_path, platform_key) -> None:
    """Issued 299 s ahead (inside the allowed skew) and accepted at t0: still a replay at t0 + 86 450 s and
    at the last instant the age check would pass; only after that does the age check refuse it."""
    now = [NOW]
    h, agent = handler(tmp_path, platform_key, clock=lambda: now[0])
    future = {**cmd("set_mode", "ahead", mode="eco"), "issued_at": NOW + 299, "expires_at": None}
    assert (await answer(h, future)).ok
    for later in (NOW + 86_450, NOW + 299 + 86_400):
        now[0] = later
        assert (await answer(h, cmd("set_mode", "other-" + str(later), mode="eco") | {"issued_at": later, "expires_at": None}
                             )).ok  # traffic that purges old ids
        assert (await answer(h, future)).reason == Reason.REPLAYED, later
    now[0] = NOW + 299 + 86_400 + 1
    assert (await answer(h, future)).reason == Reason.EXPIRED
    assert agent.calls.count(("set_mode", "eco")) == 3


async def test_replay_window_survives_restart(tmp_path, platform_key) -> None:
    h, _ = handler(tmp_path, platform_key)
    assert (await answer(h, cmd("set_mode", "once", mode="eco"))).ok
    h.replay.close()
    h2, agent2 = handler(tmp_path, platform_key)
    assert (await answer(h2, cmd("set_mode", "once", mode="eco"))).reason == Reason.REPLAYED
    assert agent2.calls == []


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                  max_size=5), max_leaves=20)
_names = st.sampled_from(["set_setpoint", "set_mode", "set_schedule", "submit_job", "cancel_job",
                          "request_diagnostics", "reset_alarm", "nope", ""])


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A well-formed envelope with one field replaced by garbage or removed, or a wrong version."""
    document = cmd(draw(_names), draw(st.text(max_size=70)))
    key = draw(st.sampled_from(sorted(document) + ["setpoint_c", "mode", "manifest", "signature", "rules"]))
    if draw(st.booleans()):
        document[key] = draw(_json)
    else:
        document.pop(key, None)
    document["v"] = draw(st.sampled_from([1, 2, "1", None]))
    return json.dumps(document).encode()


_payloads = st.one_of(st.binary(max_size=200), _json.map(lambda v: json.dumps(v).encode()), _mutated())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_payloads)
async def test_fuzz_handler_never_raises_and_changes_nothing(tmp_path, platform_key, payload: bytes) -> None:
    h, agent = handler(tmp_path, platform_key)
    try:
        before = h.replay.ids()
        response = await h.handle(payload)
        json.loads(response.model_dump_json())  # the answer is publishable
        if response.ok:  # only a complete, valid, unsigned command can pass: then it is applied once
            assert response.reason == Reason.OK and len(agent.calls) == 1
            return
        assert response.reason not in (Reason.OK, Reason.INTERNAL_ERROR)
        assert agent.calls == [] and h.replay.ids() == before
    finally:
        h.replay.close()


async def test_request_response_over_the_broker(sync_cfg, platform, platform_key) -> None:
    cfg = sync_cfg()
    agent = FakeAgent()
    replay = ReplayWindow(cfg.outbox_path.with_name("replay.db"), cfg.command_replay_window_s)
    commands = CommandHandler(agent, replay, Verifier(load_public_key(cfg.platform_public_key)),
                              device_id="heater-1")
    client = SyncClient(cfg, "heater-1", Outbox(cfg.outbox_path, durability="normal"), commands)
    task = asyncio.create_task(client.run())
    assert await platform.wait(lambda p: any(a[1] == "online" for a in p.devices["heater-1"].availability))
    # The client subscribes before it publishes "online" on the same connection, and the broker handles one
    # connection's packets in order: once "online" is seen, the command subscription is in place.
    corr = platform.set_setpoint("heater-1", "comfort", 21.0)
    assert (await asyncio.to_thread(platform.response, corr))["reason"] == "ok"
    now = time.time()
    job = {"job_id": "job-9", "image_sha256": "b" * 64, "argv": ["x"], "cpus": 2.0, "max_runtime_s": 60.0,
           "checkpoint": False, "not_after": now + 600}
    corr = platform.submit_job("heater-1", job)
    assert (await asyncio.to_thread(platform.response, corr))["reason"] == "ok"
    # the signed command captured and re-sent in a fresh envelope, or as it was, or to another heater
    signed = platform.signed_command("heater-1", "submit_job",
                                     manifest=platform.sign_job("heater-1", {**job, "job_id": "job-10"}))
    for document, reason in [(signed, "ok"), ({**signed, "command_id": "fresh", "issued_at": time.time()},
                                              "bad_signature"), (signed, "replayed"),
                             ({**signed, "command_id": "elsewhere", "device_id": "heater-2"}, "invalid")]:
        corr = platform.command("heater-1", document)
        assert (await asyncio.to_thread(platform.response, corr))["reason"] == reason, document
    corr = platform.command("heater-1", {}, raw=b"\x00garbage")
    assert (await asyncio.to_thread(platform.response, corr))["reason"] == "malformed_json"
    assert agent.calls == [("set_setpoint", ("comfort", 21.0)), ("submit_job", "job-9"), ("submit_job", "job-10")]
    # a command sent while the heater is offline with a 1 s message expiry dies at the broker
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    stale = platform.command("heater-1", platform.new_command("set_mode", mode="off"), expiry_s=1)
    await asyncio.sleep(2.2)
    task = asyncio.create_task(client.run())
    fresh = platform.command("heater-1", platform.new_command("set_mode", mode="eco"), expiry_s=60)
    assert (await asyncio.to_thread(platform.response, fresh))["reason"] == "ok"
    assert platform.responses.get(stale) is None
    assert agent.calls[-1] == ("set_mode", "eco") and ("set_mode", "off") not in agent.calls
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_ids_of_the_older_replay_table_are_kept(tmp_path) -> None:
    """A replay database written by a version that stored ids by time of receipt still refuses them."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "replay.db")
    db.execute("CREATE TABLE seen_commands (id TEXT PRIMARY KEY, at REAL NOT NULL)")
    db.execute("INSERT INTO seen_commands VALUES ('old-1', ?)", (NOW - 100,))
    db.commit()
    db.close()
    window = ReplayWindow(tmp_path / "replay.db", 86400)
    assert not window.claim("old-1", NOW - 100, NOW)
    assert window.claim("new-1", NOW, NOW)
    window.close()
