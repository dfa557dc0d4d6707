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

from events import Envelope, Level, Platform, ValueType
from flagcore import ErrorCode, Evaluation, FlagError, FlagState, Reason, evaluate, evaluate_all
from flagcore import enabled_platforms as core_enabled_platforms
from flagcore.bucketing import bucket
from flagcore.plans import Enabled, FlagPlan, compile_flag
from flaglog.connection import client_options
from flagsdk import snapshot
from flagsdk.errors import BootstrapError, SnapshotError
from flagsdk.follower import Follower, StreamStats
from flagsdk.settings import SdkSettings

log = logging.getLogger(__name__)
MAX_BUCKETED = 10_000  # answers with a bucket kept by `evaluate`: 100 per rollout answer at most
_MISSING = object()  # a typed getter's "not this type" (no JSON value is this object)


JsonObject = dict[str, Any] | list[Any]  # an object flag's value: a JSON object or array


@dataclass(frozen=True, slots=True)
class Resolution:
    """One answer: the value (of the flag's type), and why (the OpenFeature fields plus the level that decided).

    From a typed getter (`get_string_details`…), an unknown flag or a flag of another type gives the caller's
    default with `reason=ERROR` and `error_code` FLAG_NOT_FOUND or TYPE_MISMATCH; `evaluation` is the core's
    answer all the same (an object value in it is the client's own: read it, do not change it).
    """

    flag_key: str
    value: Any
    reason: Reason
    variant: str | None
    level: Level | None
    error_code: ErrorCode | None
    evaluation: Evaluation

    @classmethod
    def of(cls, e: Evaluation) -> Resolution:
        return cls(e.flag_key, e.value, e.reason, e.variant, e.level, e.error_code, e)

    @classmethod
    def failed(cls, e: Evaluation, default: Any, code: ErrorCode) -> Resolution:
        return cls(e.flag_key, default, Reason.ERROR, None, None, code, e)


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
        self._bucketed: dict[tuple[int, int], tuple[Evaluation, Evaluation]] = {}  # see `_with_bucket`
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
                self._bucketed = {}
        return changed, refused

    def reconnect(self, timeout: float = 10.0) -> None:
        """Drop the Kafka connection now (as a network failure would); the client resumes by itself."""
        if self._loop is None or self._follower is None:
            return
        done: Future[None] = asyncio.run_coroutine_threadsafe(self._follower.reconnect(), self._loop)
        done.result(timeout)

    # --- evaluation --------------------------------------------------------------------------------------

    def is_enabled(self, flag_key: str, *, platform: str | None = None, user: str | None = None) -> bool:
        """The boolean flag's value for the org, one of its platforms and one user; off for an unknown flag or a
        flag of another type (its typed getter answers it)."""
        checks = self._checks
        check = checks.get(flag_key)
        if check is None:
            kind, plan = self._compiled(flag_key)
            check = checks[flag_key] = plan.enabled if kind in (ValueType.BOOLEAN, None) else _off
        return check(user, platform)  # type: ignore[no-any-return]  # a boolean flag's value is a bool

    def get_string(self, flag_key: str, default: str, *, platform: str | None = None, user: str | None = None) -> str:
        """A string flag's value; `default` for an unknown flag or one of another type. Never raises."""
        return self._typed(flag_key, ValueType.STRING, default, platform, user)  # type: ignore[no-any-return]

    def get_integer(self, flag_key: str, default: int, *, platform: str | None = None, user: str | None = None) -> int:
        """An integer flag's value; `default` for an unknown flag or one of another type. Never raises."""
        return self._typed(flag_key, ValueType.INTEGER, default, platform, user)  # type: ignore[no-any-return]

    def get_float(
        self, flag_key: str, default: float, *, platform: str | None = None, user: str | None = None
    ) -> float:
        """A float flag's value; `default` for an unknown flag or one of another type. Never raises."""
        return self._typed(flag_key, ValueType.FLOAT, default, platform, user)  # type: ignore[no-any-return]

    def get_object(
        self, flag_key: str, default: JsonObject, *, platform: str | None = None, user: str | None = None
    ) -> JsonObject:
        """An object flag's value (a JSON object or array, the caller's own copy); `default` for an unknown flag
        or one of another type. Never raises."""
        value = self._typed(flag_key, ValueType.OBJECT, _MISSING, platform, user)
        return default if value is _MISSING else _copy(value)

    def get_boolean_details(
        self, flag_key: str, default: bool, *, platform: str | None = None, user: str | None = None
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.BOOLEAN, default, platform=platform, user=user)

    def get_string_details(
        self, flag_key: str, default: str, *, platform: str | None = None, user: str | None = None
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.STRING, default, platform=platform, user=user)

    def get_integer_details(
        self, flag_key: str, default: int, *, platform: str | None = None, user: str | None = None
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.INTEGER, default, platform=platform, user=user)

    def get_float_details(
        self, flag_key: str, default: float, *, platform: str | None = None, user: str | None = None
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.FLOAT, default, platform=platform, user=user)

    def get_object_details(
        self, flag_key: str, default: JsonObject, *, platform: str | None = None, user: str | None = None
    ) -> Resolution:
        return self.resolve(flag_key, ValueType.OBJECT, default, platform=platform, user=user)

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

    def _typed(self, flag_key: str, kind: ValueType, default: Any, platform: str | None, user: str | None) -> Any:
        found = self._values.get(flag_key) or self._compiled(flag_key)
        return found[1].enabled(user, platform) if found[0] is kind else default

    def _evaluation(self, flag_key: str, platform: str | None, user: str | None) -> tuple[ValueType | None, Evaluation]:
        """The flag's type and `flagcore.evaluate`'s answer, from the flag's plan where it holds (a user without an
        override of the flag), else evaluated in full. A plan past its end (a scheduled step fell due) is made again."""
        kind, plan = self._values.get(flag_key) or self._compiled(flag_key)
        if plan.until != math.inf and time.time() >= plan.until:
            self._values.pop(flag_key, None)
            kind, plan = self._compiled(flag_key)
        if user is not None and user in plan.users:
            state = self._state
            return kind, evaluate(state.catalog, state.tenant(self.org_id), flag_key, platform=platform, user_id=user)
        rule = plan.platforms.get(platform, plan.default) if platform is not None else plan.default
        e = rule.outcomes[rule.pick(user)]
        if e.rollout_percentage is not None:  # a plan leaves the rollout bucket, the subject's own, to the caller
            e = self._with_bucket(e, bucket(flag_key, self.org_id if user is None else user))
        return kind, e

    def _with_bucket(self, e: Evaluation, subject_bucket: int) -> Evaluation:
        """`e` with the subject's bucket, kept: a rollout has at most 100 of them per answer, and
        `dataclasses.replace` costs ~5 µs, most of an `evaluate` call. Keyed by the plan's answer object
        (checked by identity, so a reused id never matches) and emptied when it grows past its bound."""
        kept = self._bucketed.get((id(e), subject_bucket))
        if kept is not None and kept[0] is e:
            return kept[1]
        if len(self._bucketed) >= MAX_BUCKETED:
            self._bucketed = {}
        answer = replace(e, bucket=subject_bucket)
        self._bucketed[id(e), subject_bucket] = (e, answer)
        return answer

    def resolve(
        self, flag_key: str, value_type: ValueType, default: Any, *, platform: str | None = None,
        user: str | None = None,
    ) -> Resolution:
        """The flag's details if it is a `value_type` flag (an object value: the caller's own copy); else
        `default`, with FLAG_NOT_FOUND or TYPE_MISMATCH."""
        kind, e = self._evaluation(flag_key, platform, user)
        if e.error_code is not None:
            return Resolution.failed(e, default, e.error_code)
        if kind is not value_type:
            return Resolution.failed(e, default, ErrorCode.TYPE_MISMATCH)
        if value_type is ValueType.OBJECT:
            return replace(Resolution.of(e), value=_copy(e.value))
        return Resolution.of(e)

    def evaluate(self, flag_key: str, *, platform: str | None = None, user: str | None = None) -> Resolution:
        """The value (of the flag's type) with its reason, the level that decided and the event that set it."""
        return Resolution.of(self._evaluation(flag_key, platform, user)[1])

    def evaluate_all(self, *, platform: str | None = None, user: str | None = None) -> list[Resolution]:
        state = self._state
        tenant = state.tenant(self.org_id)
        return [Resolution.of(e) for e in evaluate_all(state.catalog, tenant, platform=platform, user_id=user)]

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
