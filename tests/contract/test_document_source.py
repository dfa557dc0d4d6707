"""The query service's `DocumentSource` port (services/query/service.py): one contract, run on the in-memory
`StateSource` (tests/support/query_fakes.py) and on `PostgresDocuments` over what the projector's own code
wrote into a database of its own (the query role, under RLS).

For the same log both give the same documents: the catalogue (every definition and system
default), an org's org- and platform-level settings, one user's settings, and an org's pending
schedules, each exactly what the fold of the log holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson
import pytest
import pytest_asyncio

from events import ValueType
from flagcore import FlagState, TenantRules, evaluate, fold
from services.infra.postgres import create_pool
from services.infra.settings import Role, Settings
from services.projector.projection import Projector
from services.projector.store import PostgresStore, create_projector_pool
from services.query.adapters import PostgresDocuments
from services.query.documents import (
    catalog_document,
    compile_catalog,
    compile_org,
    compile_user,
    dumps,
    org_document,
    user_document,
)
from tests.support.eventlog import LIMITS, THEMES, EventLog, every_row_log
from tests.support.projector_fakes import NoDeadLetters, NullInvalidator
from tests.support.query_fakes import StateSource, catalog_rows, override_rows, rule_rows
from tests.support.records import records


class DocumentSource(Protocol):
    async def catalog(self) -> bytes: ...
    async def org(self, org_id: str) -> bytes: ...
    async def user(self, org_id: str, user_id: str) -> bytes: ...
    async def scheduled(self, org_id: str) -> list[dict[str, Any]]: ...


@pytest.fixture(scope="module")
def log() -> EventLog:
    return every_row_log("o1", "o2")


@pytest.fixture(scope="module")
def state(log: EventLog) -> FlagState:
    return fold(log.events)


def as_json(document: bytes) -> Any:
    return orjson.loads(document)


class DocumentSourceContract:
    """Subclass with a `source` fixture serving the documents of the module's `log`."""

    async def test_the_catalogue_holds_every_definition_and_system_default(
        self, source: DocumentSource, state: FlagState
    ) -> None:
        compiled = compile_catalog(await source.catalog()).catalog
        assert compiled.definitions == state.catalog.definitions
        assert compiled.system == state.catalog.system
        assert {d.killed for d in compiled.definitions.values()} == {True, False}  # the log has every kind
        assert compiled.definitions["c.experiment"].variants and compiled.definitions["c.experiment"].expires_at
        theme, limits = compiled.definitions["c.theme"], compiled.definitions["c.limits"]
        assert (theme.value_type, dict(theme.values), theme.default_variant) == (ValueType.STRING, THEMES, "light")
        assert (limits.value_type, dict(limits.values), limits.off_variant) == (ValueType.OBJECT, LIMITS, "small")
        assert compiled.system["c.theme"].variant == "blue"

    async def test_the_listing_says_what_each_flag_serves(self, source: DocumentSource) -> None:
        listing = {f["key"]: f for f in orjson.loads(compile_catalog(await source.catalog()).listing)["flags"]}
        theme, release = listing["c.theme"], listing["c.release"]
        assert (theme["value_type"], theme["values"], theme["off_variant"]) == ("string", THEMES, "dark")
        assert (theme["system"]["variant"], theme["system"]["split"]) == ("blue", None)
        assert (release["value_type"], release["values"]) == ("boolean", {"on": True, "off": False})
        assert (release["default_variant"], release["off_variant"]) == ("on", "off")

    async def test_typed_values_evaluate_as_the_fold_does(self, source: DocumentSource, state: FlagState) -> None:
        catalog = compile_catalog(await source.catalog()).catalog
        for org in ("o1", "o2"):
            documents = compile_org(await source.org(org))
            users = compile_user(await source.user(org, "u1")).user
            tenant = TenantRules(org, documents.org, documents.platform, users)
            for key in ("c.theme", "c.limits"):
                for platform in (None, "meta"):
                    for user in (None, "u1", "u7"):
                        want = evaluate(state.catalog, state.tenant(org), key, platform=platform, user_id=user)
                        assert evaluate(catalog, tenant, key, platform=platform, user_id=user) == want
            if org == "o2":
                answer = evaluate(catalog, tenant, "c.limits", user_id="u1")
                assert (answer.value, answer.variant) == (LIMITS["list"], "list")
                assert answer.reason.value == "TARGETING_MATCH"

    async def test_an_orgs_document_holds_its_org_and_platform_settings(
        self, source: DocumentSource, state: FlagState
    ) -> None:
        for org in ("o1", "o2"):
            compiled = compile_org(await source.org(org))
            assert (compiled.org_id, compiled.org, compiled.platform) == (
                org, state.tenant(org).org, state.tenant(org).platform
            )
        assert compile_org(await source.org("o1")).org["c.release"].schedule  # a pending step travels with it

    async def test_the_catalogue_and_an_orgs_document_hold_their_targeting_rules(
        self, source: DocumentSource, state: FlagState
    ) -> None:
        catalog = compile_catalog(await source.catalog()).catalog
        assert catalog.rules == state.catalog.rules and catalog.rules  # the system's, with the event that set them
        assert [r.id for r in catalog.rules["c.release"].rules] == ["acme-staff"]
        for org in ("o1", "o2"):
            assert compile_org(await source.org(org)).rules == state.tenant(org).rules
        assert compile_org(await source.org("o1")).rules["c.theme"].rules[0].split is not None
        assert compile_org(await source.org("o2")).rules == {}  # set, then emptied: no row

    async def test_a_users_document_holds_that_users_settings_only(
        self, source: DocumentSource, state: FlagState
    ) -> None:
        for org, user in (("o1", "u1"), ("o2", "u1"), ("o1", "u2")):
            mine = {(u, k): s for (u, k), s in state.tenant(org).user.items() if u == user}
            assert compile_user(await source.user(org, user)).user == mine
        assert compile_user(await source.user("o1", "u1")).user  # the log sets some

    async def test_an_org_or_user_with_nothing_is_still_a_document(self, source: DocumentSource) -> None:
        assert as_json(await source.org("o-nobody")) == {"org_id": "o-nobody", "org": [], "platform": []}
        assert as_json(await source.user("o1", "stranger")) == {"org_id": "o1", "user_id": "stranger", "user": []}
        assert as_json(await source.user("o1", "u2")) == {"org_id": "o1", "user_id": "u2", "user": []}  # cleared

    async def test_the_documents_are_what_the_builders_make_of_the_folded_rows(
        self, source: DocumentSource, state: FlagState
    ) -> None:
        """The same JSON whichever source: what `services.query.documents` builds from rows of the fold."""
        catalog = catalog_document(*catalog_rows(state.catalog), rule_rows(state, state.catalog.rules))
        assert as_json(await source.catalog()) == as_json(dumps(catalog))
        for org in ("o1", "o2"):
            rows = override_rows(state.tenant(org))
            rules = rule_rows(state, state.tenant(org).rules)
            expected = org_document(org, [r for r in rows if r["level"] != "user"], rules)
            assert as_json(await source.org(org)) == as_json(dumps(expected))
            users = [r for r in rows if r["user_id"] == "u1"]
            assert as_json(await source.user(org, "u1")) == as_json(dumps(user_document(org, "u1", users)))

    async def test_scheduled_lists_an_orgs_pending_steps(self, source: DocumentSource) -> None:
        step = {"at": "2030-01-01T00:00:00Z", "enabled": True, "rollout_percentage": None}
        assert await source.scheduled("o1") == [
            {"level": "org", "platform": "", "user_id": "", "flag_key": "c.release", "schedule": [step]}
        ]
        assert await source.scheduled("o2") == []


class TestStateSource(DocumentSourceContract):
    @pytest.fixture
    def source(self, state: FlagState) -> StateSource:
        return StateSource(state)


@pytest.fixture(scope="module")
def documents_database(make_settings: Callable[[], Settings]) -> Settings:
    """A database of its own: the catalogue is every flag of the database."""
    return make_settings()


@pytest_asyncio.fixture(scope="module")
async def postgres_documents(documents_database: Settings, log: EventLog) -> AsyncIterator[PostgresDocuments]:
    db = documents_database
    projector_pool = await create_projector_pool(db)
    try:
        store = PostgresStore(projector_pool, db.projector_group)
        applied = await Projector(store, NoDeadLetters(), NullInvalidator(), retry_backoff=0).apply(records(log))
        assert applied.applied == len(log.events)
    finally:
        await projector_pool.close()
    pool = await create_pool(db, Role.QUERY, min_size=1, max_size=2)
    yield PostgresDocuments(pool)
    await pool.close()


@pytest.mark.integration
class TestPostgresDocuments(DocumentSourceContract):
    @pytest.fixture
    def source(self, postgres_documents: PostgresDocuments) -> PostgresDocuments:
        return postgres_documents
