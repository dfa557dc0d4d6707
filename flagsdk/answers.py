"""Answers with reasons, compiled: a flag's plan (`flagcore.plans`) with every outcome made a `Resolution` once.

`FlagClient.evaluate` and the details getters hand out these shared answers (immutable) instead of
building one per call: a static flag's details cost a table lookup and a call. Only an answer that
carries the subject's own rollout bucket is made per call. The plan picks the outcome (a rule's
`outcomes[pick(user)]`, or `Rule.answer` when targeting rules are tried first); this module only
presents it, and evaluates in full (`flagcore.evaluate`) for a user with an override of the flag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from events import Level
from flagcore import ErrorCode, Evaluation, Reason
from flagcore.bucketing import bucket
from flagcore.plans import FlagPlan, Rule
from flagcore.targeting import attributes

__all__ = ["Details", "Resolution", "compile_details"]

Context = Mapping[str, Any] | None
Details = Callable[[str | None, str | None, Context], "Resolution"]  # (user, platform, context) → answer
Full = Callable[[str | None, str | None, Context], Evaluation]  # `flagcore.evaluate` on the client's state


@dataclass(frozen=True, slots=True)
class Resolution:
    """One answer: the value (of the flag's type), and why (the OpenFeature fields plus the level that decided).

    `rule` names the targeting rule that matched (reason TARGETING_MATCH; None when no rule decided).
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
    rule: str | None = None

    @classmethod
    def of(cls, e: Evaluation) -> Resolution:
        return cls(e.flag_key, e.value, e.reason, e.variant, e.level, e.error_code, e, e.rule)

    @classmethod
    def failed(cls, e: Evaluation, default: Any, code: ErrorCode) -> Resolution:
        return cls(e.flag_key, default, Reason.ERROR, None, None, code, e)


def compile_details(plan: FlagPlan, org_id: str, full: Full) -> Details:
    """`(user, platform, context) → Resolution` for the plan's flag, good until `plan.until` (the caller's to
    check): the answer of `flagcore.evaluate`, the rollout bucket included."""
    default = _present(plan.default, plan.flag_key, org_id)
    by_platform = {p: _present(r, plan.flag_key, org_id) for p, r in plan.platforms.items()}
    users = plan.users

    if not by_platform and not users:
        return default
    if not users:

        def per_platform(user: str | None, platform: str | None, context: Context) -> Resolution:
            return (default if platform is None else by_platform.get(platform, default))(user, platform, context)

        return per_platform

    def with_overrides(user: str | None, platform: str | None, context: Context) -> Resolution:
        if user is not None and user in users:  # the user's own override: the plan does not hold
            return Resolution.of(full(user, platform, context))
        return (default if platform is None else by_platform.get(platform, default))(user, platform, context)

    return with_overrides


def _present(rule: Rule, flag_key: str, org_id: str) -> Details:
    """One platform's rule as answers: each of its outcomes (and its targeting rules') made once.

    Targeting rules are walked as `Rule.answer` walks them (in order; the first that holds serves its
    `outcomes[pick(user)]`, none: the rule's own), over their answers made once instead of their outcomes:
    the details of a flag with rules cost the rules' tests and little else."""
    shared = {id(e): Resolution.of(e) for e in (*rule.outcomes, *(o for t in rule.targets for o in t.outcomes))}
    plain = _plain(rule, shared, flag_key, org_id)
    if not rule.targets:
        return plain
    tried = tuple(
        (t.holds, None if len(t.outcomes) == 1 else t.pick, tuple(shared[id(o)] for o in t.outcomes))
        for t in rule.targets
    )  # targets never carry a rollout: their answers are whole

    def targeted(user: str | None, platform: str | None, context: Context) -> Resolution:
        attrs = attributes(context, org_id, platform, user)
        for holds, pick, answers in tried:
            if holds(attrs):
                return answers[0] if pick is None else answers[pick(user)]
        return plain(user, platform, context)

    return targeted


def _plain(rule: Rule, shared: dict[int, Resolution], flag_key: str, org_id: str) -> Details:
    """The rule's own outcomes (`outcomes[pick(user)]`) as answers, with the rollout bucket where one applies."""
    if rule.fixed or len(rule.outcomes) == 1:
        only = shared[id(rule.outcomes[0])]
        if only.evaluation.rollout_percentage is None:
            return lambda user, platform, context: only
    answers = tuple(shared[id(e)] for e in rule.outcomes)
    outcomes, pick = rule.outcomes, rule.pick
    if all(e.rollout_percentage is None for e in outcomes):
        return lambda user, platform, context: answers[pick(user)]

    bucketed: dict[tuple[int, int], Resolution] = {}  # (outcome, bucket) → its answer: 100 per outcome at most

    def rolled_out(user: str | None, platform: str | None, context: Context) -> Resolution:
        i = pick(user)
        e = outcomes[i]
        if e.rollout_percentage is None:
            return answers[i]
        subject_bucket = bucket(flag_key, org_id if user is None else user)
        kept = bucketed.get((i, subject_bucket))
        if kept is None:  # made once: `dataclasses.replace` costs ~5 µs, most of an `evaluate` call
            kept = bucketed[i, subject_bucket] = Resolution.of(replace(e, bucket=subject_bucket))
        return kept

    return rolled_out
