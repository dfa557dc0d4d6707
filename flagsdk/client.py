"""`FlagClient`: evaluate one org's flags in-process, kept current by the flag-change topic.

Start: the org's snapshot from the query service (or, when it cannot answer, the
last snapshot file), then a background thread runs an asyncio loop that folds the
topic from the offsets the snapshot covers. Evaluation is synchronous, lock-free
and never raises: it reads the state the fold keeps. With Kafka or the query
service down the client keeps answering from its last state; `status()` says
how stale that is.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson

from events import Envelope, Platform, ValueType
from flagcore import ErrorCode, Evaluation, FlagError, FlagState, evaluate, evaluate_all
from flagcore import enabled_platforms as core_enabled_platforms
from flagcore.plans import Enabled, FlagPlan, compile_flag
from flaglog.connection import client_options
from flagsdk import snapshot
from flagsdk.answers import Details, Resolution, compile_details
from flagsdk.errors import BootstrapError, SnapshotError
from flagsdk.follower import Follower, StreamStats
from flagsdk.settings import SdkSettings

log = logging.getLogger(__name__)
_MISSING = object()  # a typed getter's "not this type" (no JSON value is this object)


JsonObject = dict[str, Any] | list[Any]  # an object flag's value: a JSON object or array
Context = Mapping[str, Any] | None  # an evaluation context's attributes (None: none)
_Answers = tuple[ValueType | None, bool, float, Details]  # a flag's type, whether its plan ends, its end, answers


@dataclass(frozen=True, slots=True)
class Status:
    """How current the client is."""

    source: str  # where the state came from: "query" or "snapshot"
    connected: bool  # following the topic right now
    lag: int | None  # records on the topic not yet folded (None: unknown, never fetched)
    last_event_age: float | None  # seconds since the last folded event occurred (None: none folded yet)
    since_contact: float | None  # seconds since Kafka last answered (None: never)
    applied: int
    duplicates: int
    dropped: int
    refused: int
    reconnects: int
    positions: dict[int, int]

    @property
    def current(self) -> bool:
        """Connected and nothing left to fold: the answers are as fresh as the topic."""
        return self.connected and self.lag == 0


@dataclass(frozen=True, slots=True)
class Staleness:
    """How far behind the log the client's answers may be.

    `seconds`: 0 while the last fetch left nothing to fold, else the time since one last did (since the
    client started if none has): a change on the topic may have been missing from the answers that long.
    `records`: records on the topic not yet folded (None: unknown, Kafka has not answered yet).
    """

    seconds: float
    records: int | None


class FlagClient:
    """One org's flags, evaluated locally. Use as a context manager, or `start()` and `close()`."""

    def __init__(
        self,
        *,
        query_url: str,
        api_key: str,
        org_id: str,
        kafka: Mapping[str, Any],
        snapshot_path: Path | str | None = None,
        timeout: float = 5.0,
        reconnect_delay: float = 0.5,
        metrics_registry: Any = None,
    ) -> None:
        """`kafka`: aiokafka connection options (`bootstrap_servers`, security); see docs/sdk.md.

        `metrics_registry`: a `prometheus_client.CollectorRegistry` to export `staleness()` on (the `metrics`
        extra), as `flagstream_sdk_staleness_seconds{org}` and `flagstream_sdk_lag_records{org}` until `close()`.
        """
        self.org_id = org_id
        self._query_url = query_url.rstrip("/")
        self._api_key = api_key
        self._kafka = dict(kafka)
        self._snapshot_path = None if snapshot_path is None else Path(snapshot_path)
        self._timeout = timeout
        self._reconnect_delay = reconnect_delay
        self._lock = threading.Lock()  # the fold and check compilation; evaluation reads without it
        self._state = FlagState()  # until started: every flag is unknown, so off (never an exception)
        self._topic = ""
        self._checks: dict[str, Enabled] = {}  # per boolean flag, `flagcore.plans`' compiled value
        self._values: dict[str, tuple[ValueType | None, FlagPlan]] = {}  # per flag: its type (None: unknown), plan
        self._answers: dict[str, _Answers] = {}  # per flag: its plan's answers with reasons (`flagsdk.answers`)
        self._source = ""
        self._follower: Follower | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        self._exported: Callable[[], None] | None = None
        if metrics_registry is not None:
            from flagsdk.metrics import export  # prometheus-client only when asked for

            self._exported = export(self, metrics_registry)

    @classmethod
    def from_settings(cls, settings: SdkSettings, *, api_key: str, org_id: str, **options: Any) -> FlagClient:
        """A client for the deployment `settings` describe (Kafka TLS/SASL included)."""
        kafka = client_options(settings)
        return cls(query_url=settings.query_base_url, api_key=api_key, org_id=org_id, kafka=kafka, **options)

    @classmethod
    def from_env(cls, *, api_key: str, org_id: str, **options: Any) -> FlagClient:
        """A client for the deployment the `FLAGS_*` environment describes, as the services read it."""
        return cls.from_settings(SdkSettings(), api_key=api_key, org_id=org_id, **options)

    @classmethod
    def from_state(cls, state: FlagState, *, org_id: str) -> FlagClient:
        """A client over a state you already hold, following nothing: offline evaluation, tools and tests."""
        client = cls(query_url="", api_key="", org_id=org_id, kafka={})
        client._state = state
        client._source = "state"
        return client

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> FlagClient:
        """Bootstrap (query service, else snapshot file) and start following; `BootstrapError` if neither."""
        snap = self._bootstrap()
        self._started = time.monotonic()
        self._state = snap.state
        self._topic = snap.topic
        self._follower = Follower(
            kafka=self._kafka, topic=snap.topic, org_id=self.org_id, positions=dict(snap.offsets), apply=self._apply,
            retry_delay=self._reconnect_delay,
        )
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"flagsdk-{self.org_id}", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def close(self) -> None:
        """Stop following; with a snapshot file, write the state reached, so a restart resumes from it."""
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = self._loop = self._task = None
        if self._exported is not None:
            self._exported()
            self._exported = None
        if self._snapshot_path is not None and self._follower is not None:
            raw = snapshot.dump(self._state, org_id=self.org_id, topic=self._topic, offsets=self._follower.positions)
            snapshot.save(self._snapshot_path, raw)

    def __enter__(self) -> FlagClient:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _bootstrap(self) -> snapshot.Snapshot:
        url = f"{self._query_url}/v1/orgs/{self.org_id}/bootstrap"
        try:
            response = httpx.get(url, headers={"Authorization": f"Bearer {self._api_key}"}, timeout=self._timeout)
            response.raise_for_status()
            snap = snapshot.parse(response.content, org_id=self.org_id)
        except (httpx.HTTPError, SnapshotError) as exc:
            if self._snapshot_path is None or not self._snapshot_path.exists():
                raise BootstrapError(f"cannot bootstrap org {self.org_id!r} from {url}: {exc}") from exc
            log.warning("query service unavailable (%s); starting from snapshot %s", exc, self._snapshot_path)
            try:
                snap = snapshot.load(self._snapshot_path, org_id=self.org_id)
            except SnapshotError as bad:
                raise BootstrapError(str(bad)) from bad
            self._source = "snapshot"
            return snap
        if self._snapshot_path is not None:
            snapshot.save(self._snapshot_path, response.content)
        self._source = "query"
        return snap

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        assert self._follower is not None
        self._task = loop.create_task(self._follower.run())
        loop.call_soon(ready.set)
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _apply(self, envelopes: list[Envelope]) -> tuple[int, int]:
        """Runs on the stream thread: fold, then drop every check (they are made again on demand)."""
        changed = refused = 0
        with self._lock:
            for envelope in envelopes:
                try:
                    changed += self._state.apply(envelope)
                except FlagError as exc:  # the projector dead-letters a definition that cannot apply
                    refused += 1
                    log.warning("flag stream: refusing event %s: %s", envelope.event_id, exc)
            if changed:
                self._checks = {}
                self._values = {}
                self._answers = {}
        return changed, refused

    def reconnect(self, timeout: float = 10.0) -> None:
        """Drop the Kafka connection now (as a network failure would); the client resumes by itself."""
        if self._loop is None or self._follower is None:
            return
        done: Future[None] = asyncio.run_coroutine_threadsafe(self._follower.reconnect(), self._loop)
        done.result(timeout)

    # --- evaluation --------------------------------------------------------------------------------------
    # `context`: the attributes targeting rules read (email, plan, country, app_version, ip, any custom one),
    # e.g. {"email": "ana@acme.com", "plan": "enterprise"}; `org`, `platform` and `targeting_key` (the user)
    # are the call's own. Without one, rules see only those three. docs/sdk.md, "Targeting rules".

    def is_enabled(
        self, flag_key: str, *, platform: str | None = None, user: str | None = None, context: Context = None
    ) -> bool:
        """The boolean flag's value for the org, one of its platforms, one user and their context; off for an
        unknown flag or a flag of another type (its typed getter answers it)."""
        if context:  # rules may read it: the plan's answer (a flag without rules ignores it there)
            return self._typed(flag_key, ValueType.BOOLEAN, False, platform, user, context) is True
        checks = self._checks
        check = checks.get(flag_key)
        if check is None:
            kind, plan = self._compiled(flag_key)
            check = checks[flag_key] = plan.enabled if kind in (ValueType.BOOLEAN, None) else _off
        return check(user, platform)  # type: ignore[no-any-return]  # a boolean flag's value is a bool

    def get_string(
        self,
        flag_key: str,
        default: str,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> str:
        """A string flag's value; `default` for an unknown flag or one of another type. Never raises."""
        return self._typed(flag_key, ValueType.STRING, default, platform, user, context)  # type: ignore[no-any-return]

    def get_integer(
        self,
        flag_key: str,
        default: int,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> int:
        """An integer flag's value; `default` for an unknown flag or one of another type. Never raises."""
        return self._typed(flag_key, ValueType.INTEGER, default, platform, user, context)  # type: ignore[no-any-return]

    def get_float(
        self,
        flag_key: str,
        default: float,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> float:
        """A float flag's value; `default` for an unknown flag or one of another type. Never raises."""
        return self._typed(flag_key, ValueType.FLOAT, default, platform, user, context)  # type: ignore[no-any-return]

    def get_object(
        self,
        flag_key: str,
        default: JsonObject,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> JsonObject:
        """An object flag's value (a JSON object or array, the caller's own copy); `default` for an unknown flag
        or one of another type. Never raises."""
        value = self._typed(flag_key, ValueType.OBJECT, _MISSING, platform, user, context)
        return default if value is _MISSING else _copy(value)

    def get_boolean_details(
        self,
        flag_key: str,
        default: bool,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.BOOLEAN, default, platform=platform, user=user, context=context)

    def get_string_details(
        self,
        flag_key: str,
        default: str,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.STRING, default, platform=platform, user=user, context=context)

    def get_integer_details(
        self,
        flag_key: str,
        default: int,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.INTEGER, default, platform=platform, user=user, context=context)

    def get_float_details(
        self,
        flag_key: str,
        default: float,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.FLOAT, default, platform=platform, user=user, context=context)

    def get_object_details(
        self,
        flag_key: str,
        default: JsonObject,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.OBJECT, default, platform=platform, user=user, context=context)

    def _compiled(self, flag_key: str) -> tuple[ValueType | None, FlagPlan]:
        """The flag's type (None: not defined) and its plan (`flagcore.plans`), made once per state.

        Stored in the table read first: one the fold replaced meanwhile is dropped with what it holds."""
        values = self._values
        found = values.get(flag_key)
        if found is None:
            with self._lock:
                state = self._state
                definition = state.catalog.definitions.get(flag_key)
                plan = compile_flag(state.catalog, state.tenant(self.org_id), flag_key, time.time())
            found = values[flag_key] = (None if definition is None else definition.value_type, plan)
        return found

    def _typed(
        self, flag_key: str, kind: ValueType, default: Any, platform: str | None, user: str | None, context: Context
    ) -> Any:
        found = self._values.get(flag_key) or self._compiled(flag_key)
        if found[0] is not kind:
            return default
        plan = found[1]
        return plan.answer(user, platform, context).value if context else plan.enabled(user, platform)

    def _answers_of(self, flag_key: str) -> _Answers:
        """The flag's type and its answers with reasons (`flagsdk.answers`), made once per plan; a plan past its
        end (a scheduled step fell due) is made again."""
        answers = self._answers  # read first: a table the fold replaced meanwhile is dropped with its entry
        kind, plan = self._compiled(flag_key)
        if plan.until != math.inf and time.time() >= plan.until:
            self._values.pop(flag_key, None)
            kind, plan = self._compiled(flag_key)

        def full(user: str | None, platform: str | None, context: Context) -> Evaluation:
            state = self._state
            tenant = state.tenant(self.org_id)
            return evaluate(state.catalog, tenant, flag_key, platform=platform, user_id=user, context=context)

        found = answers[flag_key] = (kind, plan.until != math.inf, plan.until, compile_details(plan, self.org_id, full))
        return found

    def resolve(
        self,
        flag_key: str,
        value_type: ValueType,
        default: Any,
        *,
        platform: str | None = None,
        user: str | None = None,
        context: Context = None,
    ) -> Resolution:
        """The flag's details if it is a `value_type` flag (an object value: the caller's own copy); else
        `default`, with FLAG_NOT_FOUND or TYPE_MISMATCH."""
        found = self._answers.get(flag_key)
        if found is None or (found[1] and time.time() >= found[2]):
            found = self._answers_of(flag_key)
        r = found[3](user, platform, context)
        if r.error_code is not None:
            return Resolution.failed(r.evaluation, default, r.error_code)
        if found[0] is not value_type:
            return Resolution.failed(r.evaluation, default, ErrorCode.TYPE_MISMATCH)
        if value_type is ValueType.OBJECT:
            return replace(r, value=_copy(r.value))
        return r

    def evaluate(
        self, flag_key: str, *, platform: str | None = None, user: str | None = None, context: Context = None
    ) -> Resolution:
        """The value (of the flag's type) with its reason, the level (and rule) that decided and the event that
        set it: `flagcore.evaluate`'s answer, from the flag's plan where it holds. Never raises."""
        found = self._answers.get(flag_key)
        if found is None or (found[1] and time.time() >= found[2]):
            found = self._answers_of(flag_key)
        return found[3](user, platform, context)

    def evaluate_all(
        self, *, platform: str | None = None, user: str | None = None, context: Context = None
    ) -> list[Resolution]:
        state = self._state
        tenant = state.tenant(self.org_id)
        answers = evaluate_all(state.catalog, tenant, platform=platform, user_id=user, context=context)
        return [Resolution.of(e) for e in answers]

    def is_platform_enabled(self, platform: Platform | str, *, user: str | None = None) -> bool:
        """Is the org's ad platform switched on (`platform.{p}.enabled`, at that platform's level)?"""
        p = Platform(platform)
        return self.is_enabled(f"platform.{p.value}.enabled", platform=p.value, user=user)

    def enabled_platforms(self, *, user: str | None = None) -> list[Platform]:
        state = self._state
        return core_enabled_platforms(state.catalog, state.tenant(self.org_id), user_id=user)

    # --- staleness ------------------------------------------------------------------------------------------

    def status(self) -> Status:
        s = self._follower.stats if self._follower is not None else StreamStats()
        age = None if s.last_event_at is None else (datetime.now(UTC) - s.last_event_at).total_seconds()
        contact = None if s.last_fetch is None else time.monotonic() - s.last_fetch
        return Status(
            self._source, s.connected, s.lag, age, contact, s.applied, s.duplicates, s.dropped, s.refused,
            s.reconnects, {} if self._follower is None else dict(self._follower.positions),
        )

    def staleness(self) -> Staleness:
        """How far behind the topic's end the answers may be (`Staleness`); cheap enough to read per scrape."""
        s = self._follower.stats if self._follower is not None else StreamStats()
        if s.connected and s.lag == 0:
            return Staleness(0.0, 0)
        since = self._started if s.last_current is None else s.last_current
        return Staleness(max(0.0, time.monotonic() - since), s.lag)

    def wait_until_current(self, timeout: float = 10.0) -> bool:
        """Block until the client has folded everything on the topic (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status().current:
                return True
            time.sleep(0.01)
        return False


def _off(user: str | None, platform: str | None = None) -> bool:
    return False


def _copy(value: JsonObject) -> JsonObject:
    """The caller's own copy of an object value (the client's is shared by every answer): orjson's round trip,
    about as fast as a shallow copy for a small object and deep."""
    return orjson.loads(orjson.dumps(value))  # type: ignore[no-any-return]
