"""Who reads and writes the audit trail under which tenancy: the value type, the command side's choice, the wiring.

What Postgres does with a tenancy (row-level security, migration 0009) is tests/integration/test_cross_tenant.py;
the in-memory event store applying the same rules is tests/contract/test_event_store.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from events import Actor, ApiKeyCreated, FlagDefined, OrgOverrideSet, SubscriptionDeleted, SystemDefaultSet, decode
from services.auth.policy import Principal, Role
from services.command.api import create_app
from services.command.dependencies import wiring_of
from services.command.history import Cursor, HistoryFilter
from services.command.memory import InMemoryEventStore
from services.command.tenancy import reader_for, writer_for
from services.command.timetravel.service import TimeTravel
from services.infra.settings import Settings
from services.infra.tenancy import Tenancy
from tests.support.auth import MemoryKeys, bearer, memory_gate

ACME = Tenancy.tenant("acme")


def test_a_tenancy_is_one_org_the_system_or_every_org_never_a_mix() -> None:
    assert Tenancy.of(None) is Tenancy.SYSTEM
    assert Tenancy.of("acme") == ACME == Tenancy(org_id="acme")
    assert [str(t) for t in (ACME, Tenancy.SYSTEM, Tenancy.CROSS_TENANT)] == ["tenant acme", "system", "cross-tenant"]
    with pytest.raises(ValueError, match="non-empty"):
        Tenancy.tenant("")
    with pytest.raises(ValueError, match="not both"):
        Tenancy(org_id="acme", cross_tenant=True)


@pytest.mark.parametrize(
    ("tenancy", "org_id", "stream", "seen"),
    [
        (ACME, "acme", "org/acme/flag/a.b", True),
        (ACME, "globex", "org/globex/flag/a.b", False),
        (ACME, None, "flag/a.b", True),  # the catalogue: a definition
        (ACME, None, "flag/a.b/system", True),  # and a system default
        (ACME, None, "subscription/s1", False),  # a system-wide subscription is not the catalogue
        (ACME, None, "key/0123456789abcdef", False),
        (Tenancy.SYSTEM, None, "subscription/s1", True),
        (Tenancy.SYSTEM, None, "flag/a.b", True),
        (Tenancy.SYSTEM, "acme", "org/acme/flag/a.b", False),
        (Tenancy.CROSS_TENANT, "acme", "org/acme/flag/a.b", True),
        (Tenancy.CROSS_TENANT, None, "key/0123456789abcdef", True),
    ],
)
def test_what_each_tenancy_reads(tenancy: Tenancy, org_id: str | None, stream: str, seen: bool) -> None:
    assert tenancy.reads(org_id, stream) is seen


@pytest.mark.parametrize(
    ("role", "org_id", "reader"),
    [
        (Role.ORG_ADMIN, "acme", ACME),
        (Role.AUDITOR, "acme", ACME),
        (Role.EVALUATOR, "acme", ACME),
        (Role.AUDITOR, None, Tenancy.CROSS_TENANT),  # a system auditor may name any org
        (Role.SYSTEM_ADMIN, None, Tenancy.CROSS_TENANT),
        (Role.ORG_ADMIN, None, Tenancy.SYSTEM),  # an org role with no org reads no tenant's rows (and is refused)
    ],
)
def test_a_caller_reads_as_its_keys_scope(role: Role, org_id: str | None, reader: Tenancy) -> None:
    assert reader_for(Principal(key_id="0123456789abcdef", name="k", role=role, org_id=org_id)) == reader


def test_a_cross_tenant_context_writes_under_the_rows_owner_any_other_only_as_itself() -> None:
    org = [OrgOverrideSet(flag_key="a.b", org_id="acme", enabled=True)]
    system = [SystemDefaultSet(flag_key="a.b", enabled=True)]
    assert writer_for(org) == ACME
    assert writer_for(system) is Tenancy.SYSTEM
    assert writer_for([ApiKeyCreated(key_id="0123456789abcdef", org_id=None, name="k", role=Role.AUDITOR)]) is (
        Tenancy.SYSTEM
    )
    assert writer_for([SubscriptionDeleted(subscription_id="s1", org_id="acme")]) == ACME
    assert writer_for(org, acting_as=Tenancy.tenant("globex")) == Tenancy.tenant("globex")  # Postgres refuses it
    assert writer_for(system, acting_as=ACME) == ACME
    with pytest.raises(ValueError, match="one tenancy"):
        writer_for([*org, OrgOverrideSet(flag_key="a.b", org_id="globex", enabled=True)])


# --- the command API reads as its caller -----------------------------------------------------------------------


class _Seen:
    """The tenancies each dependency handed the routes, in order."""

    def __init__(self) -> None:
        self.readers: list[tuple[str, Tenancy]] = []


class _RecordingStore(InMemoryEventStore):
    def __init__(self, seen: _Seen) -> None:
        super().__init__()
        self.seen = seen

    def reading_as(self, reader: Tenancy) -> _RecordingStore:
        self.seen.readers.append(("events", reader))
        return super().reading_as(reader)


class _RecordingAudit:
    def __init__(self, seen: _Seen) -> None:
        self.seen = seen

    def reading_as(self, reader: Tenancy) -> _RecordingAudit:
        self.seen.readers.append(("audit", reader))
        return self

    async def page(self, wanted: HistoryFilter, *, after: Cursor | None, limit: int, horizon: int | None = None) -> Any:
        return []


class _RecordingHistory:
    def __init__(self, seen: _Seen) -> None:
        self.seen = seen

    def reading_as(self, reader: Tenancy) -> _RecordingHistory:
        self.seen.readers.append(("time travel", reader))
        return self

    async def org_known(self, org_id: str) -> bool:
        return False  # answered 404 unknown_org: the reader is what this test is after

    async def nearest_part(self, scope: str, instant: datetime, prefixes: Any = None) -> None:
        return None

    async def events(self, scope: str, *, after: int, until: datetime, prefixes: Any = None) -> list[Any]:
        return []


@pytest.mark.parametrize(
    ("role", "org_id", "reader"),
    [(Role.AUDITOR, "acme", ACME), (Role.ORG_ADMIN, "acme", ACME), (Role.AUDITOR, None, Tenancy.CROSS_TENANT)],
)
async def test_the_audit_routes_read_under_the_callers_tenancy(role: Role, org_id: str | None, reader: Tenancy) -> None:
    seen, keys = _Seen(), MemoryKeys()
    app = create_app(Settings(), store=_RecordingStore(seen), auth=memory_gate(keys))
    wiring = wiring_of(app)
    wiring.audit = _RecordingAudit(seen)
    wiring.timetravel = TimeTravel(_RecordingHistory(seen))  # type: ignore[arg-type]
    headers = bearer(keys.issue(role, org_id))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c", headers=headers) as c:
        answers = [
            await c.get("/v1/events", params={"org": "acme"}),
            await c.get("/v1/history", params={"org": "acme"}),
            await c.get("/v1/audit/at", params={"org": "acme", "at": "2026-01-01T00:00:00Z"}),
        ]
    assert [a.status_code for a in answers] == [200, 200, 404], [a.text for a in answers]
    assert seen.readers == [("events", reader), ("audit", reader), ("time travel", reader)]


async def test_a_store_nobody_bound_to_a_caller_reads_as_the_system() -> None:
    """Fail closed: the store as wired, before a route binds it to its caller, sees no tenant's rows."""
    store = InMemoryEventStore()
    options: dict[str, Any] = {"actor": Actor(id="t", name="t"), "reason": "t", "occurred_at": datetime.now(UTC)}
    every = store.reading_as(Tenancy.CROSS_TENANT)
    await every.append([FlagDefined(flag_key="a.b", group="g")], expected_version=0, **options)
    await every.append([OrgOverrideSet(flag_key="a.b", org_id="acme", enabled=True)], expected_version=0, **options)
    assert [decode(e.body).org_id for e in await store.list_events()] == [None]
    assert (await store.stream_head("org/acme/flag/a.b")).version == 0
    assert len(await every.list_events()) == 2
