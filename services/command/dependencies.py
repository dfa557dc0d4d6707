"""What the command routes use, in one typed object, and the FastAPI dependencies that hand it out.

`Wiring` is made with the app (`api.create_app`) and connected by the composition root
(`bootstrap`) when the lifespan starts, or at once by a test that hands in an event store.
The app holds it as `app.state.wiring`, read only by `wiring_of`; routes ask for its parts
as typed parameters (`Service`, `Audit`, `Travel`, `Segments`, `Wired`). A part not connected yet answers as
the route always has: 503 for the stores, 422 for key management on an instance without it.

`Service`, `Audit`, `Travel` and `Segments` read the audit trail as the caller (`reader_for`): under its
org's tenancy for an org-scoped key, so row-level security keeps another org's events and
snapshots out of any answer even where a route forgot to filter; cross-tenant for a
system-wide key, which may name any org.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from services.auth.http import Caller
from services.command.errors import InvalidCommand, StoreUnavailable, SubscriptionsUnavailable
from services.command.ports import (
    AuditTrail,
    EventStore,
    KeyStore,
    LogAcknowledgements,
    RelayView,
    SegmentStore,
    SubscriptionStore,
)
from services.command.service import CommandService, utc_now
from services.command.tenancy import reader_for
from services.command.timetravel.service import TimeTravel
from services.http import TokenBucketLimiter
from services.infra.sealing import Sealer


@dataclass(eq=False)
class Wiring:
    """The use cases and the stores behind the routes; None until connected."""

    write_limiter: TokenBucketLimiter  # every write is charged to its key's bucket
    clock: Callable[[], datetime] = utc_now
    service: CommandService | None = None
    relay: RelayView | None = None
    keys: KeyStore | None = None
    audit: AuditTrail | None = None
    timetravel: TimeTravel | None = None
    subscriptions: SubscriptionStore | None = None
    acknowledgements: LogAcknowledgements | None = None
    segments: SegmentStore | None = None
    sealer: Sealer | None = None  # from FLAGS_SUBSCRIPTION_KEY: seals a new subscription's secrets

    def connect(
        self, store: EventStore, *, relay: RelayView | None = None, clock: Callable[[], datetime] = utc_now
    ) -> None:
        """Plug the event store in: the commands, and the relay's state for `/readyz` and `/metrics`."""
        self.service = CommandService(store, clock=clock)
        self.clock = clock
        self.relay = relay

    def command_service(self) -> CommandService:
        if self.service is None:
            raise StoreUnavailable("the service is not started")
        return self.service

    def key_store(self) -> KeyStore:
        if self.keys is None:
            raise InvalidCommand("key management is not available on this instance")
        return self.keys

    def log_acknowledgements(self) -> LogAcknowledgements:
        if self.acknowledgements is None:
            raise StoreUnavailable("the event store is not started")
        return self.acknowledgements

    def subscription_store(self) -> SubscriptionStore:
        if self.subscriptions is None:
            raise StoreUnavailable("the subscription store is not started")
        return self.subscriptions

    def segment_store(self) -> SegmentStore:
        if self.segments is None:
            raise StoreUnavailable("the segment store is not started")
        return self.segments

    def subscription_sealer(self) -> Sealer:
        if self.sealer is None:
            raise SubscriptionsUnavailable("FLAGS_SUBSCRIPTION_KEY is not set on this instance")
        return self.sealer

    def audit_trail(self) -> AuditTrail:
        if self.audit is None:
            raise StoreUnavailable("the audit store is not started")
        return self.audit

    def time_travel(self) -> TimeTravel:
        if self.timetravel is None:
            raise StoreUnavailable("time travel is not started")
        return self.timetravel


def wiring_of(app: FastAPI) -> Wiring:
    wiring: Wiring = app.state.wiring
    return wiring


async def _wiring(request: Request) -> Wiring:
    return wiring_of(request.app)


async def _service(request: Request, caller: Caller) -> CommandService:
    return wiring_of(request.app).command_service().reading_as(reader_for(caller))


async def _audit(request: Request, caller: Caller) -> AuditTrail:
    return wiring_of(request.app).audit_trail().reading_as(reader_for(caller))


async def _segments(request: Request, caller: Caller) -> SegmentStore:
    return wiring_of(request.app).segment_store().reading_as(reader_for(caller))


async def _time_travel(request: Request, caller: Caller) -> TimeTravel:
    return wiring_of(request.app).time_travel().reading_as(reader_for(caller))


Wired = Annotated[Wiring, Depends(_wiring)]
Service = Annotated[CommandService, Depends(_service)]
Audit = Annotated[AuditTrail, Depends(_audit)]
Travel = Annotated[TimeTravel, Depends(_time_travel)]
Segments = Annotated[SegmentStore, Depends(_segments)]
