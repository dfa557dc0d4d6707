"""OFREP answers precompiled per (org, flag): the hot path for a context no answer was kept for. Pure: no I/O.

`flagcore.plans.compile_flag` compiles one org's flag into rules (per platform:
every answer it can give and which one a user gets); a `FlagPlan` here renders
each rule's answers once (by `services.query.ofrep`, so they are its bytes) and
answers a user (or the org) by indexing them, with at most a murmur3 hash. It is good for the
documents it was made from (the caller checks they are the very objects the
document cache holds) and for the core plan's time span; a user with an override
of the flag is never answered from it (the caller evaluates in full). A rule with
targeting rules renders their answers too and tests them on the request's context
first (`flagcore.plans.Target`); a rule with none never builds the attributes.
tests/unit/test_query_plans.py checks plans against the use cases' answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from flagcore import Catalog, TenantRules
from flagcore.plans import Pick, Rule, compile_flag
from flagcore.targeting import Test, attributes
from services.observability.tally import Exposures
from services.query import validation
from services.query.changes_stream import event_streams
from services.query.contexts import Context
from services.query.documents import CompiledCatalog, CompiledOrg
from services.query.errors import InvalidParameter
from services.query.metrics import labels_of
from services.query.ofrep import Answer, bulk_answer, render
from services.query.service import QueryService

__all__ = ["MAX_BULK_ANSWERS", "MAX_KEPT_BULK", "BulkPlan", "FlagPlan", "OrgPlans", "Plans", "bulk_body"]


class _Rendered:
    """A core rule with its answers rendered: `answers[choose(user, attrs)]` is the user's (None: the org's).

    The rule's own outcomes come first, then each targeting rule's (`targets`: its test, where its answers
    start, its pick), tried in order as `flagcore.plans.Rule.answer` tries them.
    """

    __slots__ = ("answers", "fixed", "labels", "pick", "targets")

    def __init__(self, rule: Rule) -> None:
        outcomes = list(rule.outcomes)
        targets: list[tuple[Test, int, Pick]] = []
        for target in rule.targets:
            targets.append((target.holds, len(outcomes), target.pick))
            outcomes.extend(target.outcomes)
        self.labels = tuple(labels_of(e) for e in outcomes)  # each answer's metric labels
        rendered = zip(outcomes, self.labels, strict=True)
        self.answers = tuple(Answer(200, render(e), None, Exposures([labels])) for e, labels in rendered)
        self.pick: Pick = rule.pick
        self.targets = tuple(targets)
        self.fixed = rule.fixed and not targets

    def choose(self, user: str | None, attrs: Mapping[str, Any] | None) -> int:
        """The index of the answer for `user` with these attributes (None only when there are no targets)."""
        if attrs is not None:
            for holds, start, pick in self.targets:
                if holds(attrs):
                    return start + pick(user)
        return self.pick(user)


class FlagPlan:
    """One flag's OFREP answers for one org, from `since` until `until` (seconds since the epoch)."""

    __slots__ = ("_default", "_org_id", "_platforms", "since", "until")

    def __init__(self, catalog: Catalog, org: CompiledOrg, flag_key: str, at: float) -> None:
        tenant = TenantRules(org.org_id, org.org, org.platform, {}, org.rules)  # no user: the caller sees to that
        self._org_id = org.org_id
        plan = compile_flag(catalog, tenant, flag_key, at)
        self._default = _Rendered(plan.default)
        self._platforms = {p: _Rendered(rule) for p, rule in plan.platforms.items()}
        self.since = plan.since
        self.until = plan.until

    def rule(self, platform: str | None) -> _Rendered:
        return self._default if platform is None else self._platforms.get(platform, self._default)

    def answer(self, platform: str | None, user: str | None, context: Context = None) -> Answer:
        """The answer for `user` (None: the org) on `platform` with `context`: `user` has no override of the flag."""
        rule = self.rule(platform)
        if not rule.targets:  # the flag has no rules here: no attribute is built or read
            return rule.answers[rule.pick(user)]
        return rule.answers[rule.choose(user, attributes(context, self._org_id, platform, user))]


class BulkPlan:
    """The bulk answer on one platform (or none): every flag's, with its ETag, kept per combination of outcomes.

    Only flags whose answer depends on the subject (splits, experiments) are asked; the answer for each
    combination of their outcomes is built once (at most `MAX_BULK_ANSWERS` kept), counted in `kept`, the
    worker's count of kept bulk answers, which `Plans` holds under `MAX_KEPT_BULK`.
    """

    __slots__ = ("_answers", "_dynamic", "_kept", "_org_id", "_platform", "_rules", "_targeted")

    def __init__(
        self, plans: list[FlagPlan], platform: str | None, kept: list[int] | None = None, *, org_id: str | None = None
    ) -> None:
        self._kept = [0] if kept is None else kept
        self._rules = [p.rule(platform) for p in plans]
        self._dynamic = [r for r in self._rules if not r.fixed]
        self._targeted = any(r.targets for r in self._rules)  # else no request's attributes are ever built
        self._org_id = org_id
        self._platform = platform
        self._answers: dict[tuple[int, ...], Answer] = {}

    def answer(self, user: str | None, context: Context = None) -> Answer:
        if self._targeted:
            attrs = attributes(context, self._org_id or "", self._platform, user)
            key = tuple([r.choose(user, attrs) for r in self._dynamic])
        else:  # no flag has rules: as before them, one pick per flag whose answer depends on the subject
            key = tuple([r.pick(user) for r in self._dynamic])
        kept = self._answers.get(key)
        if kept is not None:
            return kept
        picks = iter(key)
        chosen = [0 if r.fixed else next(picks) for r in self._rules]
        bodies = [r.answers[i].body for r, i in zip(self._rules, chosen, strict=True)]
        if len(self._answers) >= MAX_BULK_ANSWERS:
            self._kept[0] -= len(self._answers)
            self._answers.clear()
        self._kept[0] += 1
        made = bulk_answer(bulk_body(bodies, self._org_id))
        exposures = Exposures([r.labels[i] for r, i in zip(self._rules, chosen, strict=True)])
        kept = self._answers[key] = Answer(made.status, made.body, made.etag, exposures)
        return kept


MAX_BULK_ANSWERS = 256  # per org and platform
MAX_KEPT_BULK = 20_000  # per worker (a bulk answer of 34 flags is ~7 KB: at most ~140 MB)


class OrgPlans:
    """One org's flag plans, for one catalogue and org document (the very objects); made a flag at a time."""

    __slots__ = ("_bulk", "_bulk_since", "_bulk_until", "_flags", "_kept", "_plans", "catalog", "keys", "org")

    def __init__(self, catalog: CompiledCatalog, org: CompiledOrg, kept: list[int] | None = None) -> None:
        self._kept = [0] if kept is None else kept
        self.catalog = catalog
        self.org = org
        self.keys = tuple(sorted(catalog.catalog.definitions))  # the bulk answer's flags, in its order
        self._flags: dict[str, FlagPlan] = {}
        self._bulk: dict[str | None, BulkPlan] = {}
        self._bulk_since = self._bulk_until = 0.0
        self._plans: list[FlagPlan] = []

    def flag(self, flag_key: str, at: float) -> FlagPlan | None:
        """The flag's plan at `at`; None when the use cases answer 404 (not in the catalogue, or not a key)."""
        plan = self._flags.get(flag_key)
        if plan is not None and plan.since <= at < plan.until:
            return plan
        if flag_key not in self.catalog.catalog.definitions:
            return None
        try:
            validation.flag_key(flag_key, "key")
        except InvalidParameter:
            return None
        return self._compile(flag_key, at)

    def bulk(self, platform: str | None, at: float) -> BulkPlan:
        """Every flag's answers at `at` on `platform`, in key order (the bulk answer's order)."""
        if not self._bulk_since <= at < self._bulk_until:
            flags = self._flags
            plans = [
                plan
                if (plan := flags.get(key)) is not None and plan.since <= at < plan.until
                else self._compile(key, at)
                for key in self.keys
            ]
            self._bulk.clear()
            self._bulk_since = max((p.since for p in plans), default=at)
            self._bulk_until = min((p.until for p in plans), default=math.inf)
            self._plans = plans
        bulk = self._bulk.get(platform)
        if bulk is None:
            bulk = self._bulk[platform] = BulkPlan(self._plans, platform, self._kept, org_id=self.org.org_id)
        return bulk

    def _compile(self, flag_key: str, at: float) -> FlagPlan:
        plan = self._flags[flag_key] = FlagPlan(self.catalog.catalog, self.org, flag_key, at)
        return plan


class Plans:
    """This worker's plans over `service`'s document cache: per org, for the documents it holds now."""

    __slots__ = ("_kept", "_max", "_max_kept", "_orgs", "service")

    def __init__(self, service: QueryService, *, max_orgs: int = 10_000, max_kept_bulk: int = MAX_KEPT_BULK) -> None:
        self.service = service
        self._max = max_orgs
        self._max_kept = max_kept_bulk
        self._kept = [0]  # bulk answers made by all orgs' plans since they were last all let go (an upper bound)
        self._orgs: dict[str, OrgPlans] = {}

    def of(self, catalog: CompiledCatalog, org: CompiledOrg) -> OrgPlans:
        """The org's plans for these documents (made again when either is another object than last time)."""
        plans = self._orgs.get(org.org_id)
        if plans is None or plans.catalog is not catalog or plans.org is not org:
            if len(self._orgs) >= self._max:
                self._orgs.clear()
            plans = self._orgs[org.org_id] = OrgPlans(catalog, org, self._kept)
        if self._kept[0] > self._max_kept:  # let them all go: every org's plans are made again as asked
            self._orgs.clear()
            self._kept[0] = 0
            plans = self._orgs[org.org_id] = OrgPlans(catalog, org, self._kept)
        return plans


def bulk_body(answers: Iterable[bytes], org_id: str | None = None) -> bytes:
    """`{"flags": [...], "eventStreams": [...]}` of rendered answers (no `eventStreams` without an org): the bytes
    orjson gives for the whole (compact JSON composes), as `ofrep.evaluate_flags` makes them."""
    flags = b'{"flags":[' + b",".join(answers) + b"]"
    return flags + b"}" if org_id is None else flags + b',"eventStreams":' + event_streams(org_id) + b"}"
