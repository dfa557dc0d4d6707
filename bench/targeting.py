"""In-process evaluation with targeting rules: flagstream's SDK against peers' equivalent targeting, in one run.

    .venv/bin/python -m bench.targeting [--users 50000] [--rounds 3] [--seconds 1.0]

One boolean flag with three org-level rules, tried in order, each serving "on": the user is one of
1,000 listed ids (an `in` list standing in for a 1,000-member segment), the email matches the regex
`^[a-z0-9._-]+@acme\\.com$`, the app version is semver-greater than 2.0.0. Every user has a context (email, plan,
country, app_version); a quarter match the regex, a third the version, 2% the list, the rest fall
through all three. Evaluated by flagstream's `FlagClient.evaluate` (full details: value, variant,
reason, rule), `is_enabled` and its OpenFeature provider; growthbook (`eval_feature`, attribute
conditions `$in` / `$regex` / `$vgt`); UnleashClient (bootstrapped, three strategies with the
constraints `IN` / `STR_ENDS_WITH` / `SEMVER_GT`: Unleash has no regex operator, and ends-with says
the same of these emails). Beside them, a static flag's full details (`FlagClient.evaluate` on a flag
the system turns on) and the peers' static flags. Rounds are interleaved; the best round of each
is kept. Targets: ≥ 300,000 full details/s with the rules, ≥ 1,000,000/s on the static flag.

The write-time limit of an `in` list is `events.targeting.MAX_VALUES` (500): a segment (#14 item 4)
is what holds 1,000 members. The bench puts the 1,000 ids into the core's model (`flagcore.model.Rules`)
directly, as a segment's members reach the evaluator; the other two rules come from the log.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.inprocess import PLOTS, RESULTS, ensure_peers, openfeature_client
from bench.plots import bar_plot
from events import FlagDefined, Level, SystemDefaultSet, TargetingRulesSet
from events.targeting import Operator
from flagcore import FlagState, fold
from flagcore.model import Condition, Rules, TargetingRule
from flagsdk import FlagClient
from tests.support.factories import LogBuilder

KEY = "bench.targeted.enabled"
STATIC = "bench.static.enabled"
ORG = "acme"
SEGMENT = 1_000
REGEX = r"^[a-z0-9._-]+@acme\.com$"  # a real regex, not a literal a string test could answer
VERSION = "2.0.0"
VERSIONS = ["1.9.3", "2.0.0", "2.0.1", "2.4.0-beta.1", "1.2.0", "3.1.0"]  # 2.0.1 and 3.1.0 are above 2.0.0
PLANS = ["free", "pro", "enterprise"]
COUNTRIES = ["DE", "FR", "US", "BR", "JP"]

User = tuple[str, dict[str, Any]]  # (user id, its context's attributes)
Check = Callable[[str, dict[str, Any]], Any]  # what the bench times


def population(n: int) -> tuple[list[User], list[str]]:
    """`n` users with contexts, and the 1,000 ids of the list (the same for every run)."""
    rng = random.Random(14)
    users = []
    for i in range(n):
        domain = "acme.com" if i % 4 == 0 else "example.org"
        context = {"email": f"user-{i}@{domain}", "plan": PLANS[i % 3], "country": COUNTRIES[i % 5],
                   "app_version": VERSIONS[i % len(VERSIONS)]}  # fmt: skip
        users.append((f"user-{i}", context))
    members = [users[i][0] for i in rng.sample(range(n), min(SEGMENT, n))]
    return users, members


# --- the contenders ----------------------------------------------------------------------------------


def flagstream(members: list[str]) -> FlagClient:
    log = LogBuilder()
    log.extend([
        FlagDefined(flag_key=KEY, group="bench"),
        FlagDefined(flag_key=STATIC, group="bench"),
        SystemDefaultSet(flag_key=STATIC, enabled=True),
        TargetingRulesSet.model_validate({"flag_key": KEY, "level": Level.ORG, "org_id": ORG, "rules": [
            {"id": "staff", "variant": "on",
             "conditions": [{"attribute": "email", "operator": "matches", "values": [REGEX]}]},
            {"id": "new-app", "variant": "on",
             "conditions": [{"attribute": "app_version", "operator": "semver_gt", "values": [VERSION]}]},
        ]}),
    ])  # fmt: skip
    state: FlagState = fold(log.events)
    logged = state.tenant(ORG).rules[KEY]
    segment = TargetingRule("beta", (Condition("targeting_key", Operator.IN, tuple(members)),), variant="on")
    state.tenants[ORG].rules[KEY] = Rules((segment, *logged.rules), logged.source)  # the list first
    return FlagClient.from_state(state, org_id=ORG)


def growthbook(members: list[str], users: list[User]) -> tuple[Check, Check]:
    from growthbook import GrowthBook

    features = {
        KEY: {"defaultValue": False, "rules": [
            {"id": "beta", "condition": {"id": {"$in": members}}, "force": True},
            {"id": "staff", "condition": {"email": {"$regex": REGEX}}, "force": True},
            {"id": "new-app", "condition": {"app_version": {"$vgt": VERSION}}, "force": True},
        ]},
        STATIC: {"defaultValue": True},
    }  # fmt: skip
    gb = GrowthBook(features=features)
    attributes = {user: {"id": user, **context} for user, context in users}  # built once: evaluation is timed

    def targeted(user: str, context: dict[str, Any]) -> Any:
        gb.set_attributes(attributes[user])
        return gb.eval_feature(KEY)

    def static(user: str, context: dict[str, Any]) -> Any:
        gb.set_attributes(attributes[user])
        return gb.eval_feature(STATIC)

    return targeted, static


def unleash(members: list[str], users: list[User]) -> tuple[Check, Check, Callable[[], None]]:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    def strategy(constraint: dict[str, Any]) -> dict[str, Any]:
        return {"name": "default", "parameters": {}, "constraints": [constraint]}

    cache = FileCache("bench-targeting", directory=tempfile.mkdtemp())
    cache.bootstrap_from_dict({"version": 1, "features": [
        {"name": KEY, "enabled": True, "strategies": [
            strategy({"contextName": "userId", "operator": "IN", "values": members}),
            strategy({"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@acme.com"]}),
            strategy({"contextName": "app_version", "operator": "SEMVER_GT", "value": VERSION}),
        ]},
        {"name": STATIC, "enabled": True, "strategies": [{"name": "default", "parameters": {}}]},
    ]})  # fmt: skip
    client = UnleashClient(url="http://127.0.0.1:9", app_name="bench", disable_metrics=True,
                           disable_registration=True, cache=cache)  # fmt: skip
    client.initialize_client(fetch_toggles=False)
    contexts = {user: {"userId": user, "properties": dict(context)} for user, context in users}

    def targeted(user: str, context: dict[str, Any]) -> Any:
        return client.is_enabled(KEY, contexts[user])

    def static(user: str, context: dict[str, Any]) -> Any:
        return client.is_enabled(STATIC, contexts[user])

    return targeted, static, client.destroy


def ours_openfeature(sdk: FlagClient, users: list[User]) -> Check:
    from openfeature.evaluation_context import EvaluationContext

    from flagsdk.openfeature import FlagstreamProvider

    client = openfeature_client(FlagstreamProvider(sdk), "flagstream-targeting")
    contexts = {user: EvaluationContext(user, context) for user, context in users}
    return lambda user, context: client.get_boolean_details(KEY, False, contexts[user])


# --- timing --------------------------------------------------------------------------------------------


def rate(check: Check, users: list[User], seconds: float) -> float:
    """Evaluations per second, looping over `users` until `seconds` have passed (whole passes)."""
    done, started = 0, time.perf_counter()
    while True:
        for user, context in users:
            check(user, context)
        done += len(users)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


OURS = "flagstream FlagClient.evaluate, 3 rules (full details)"
OURS_STATIC = "flagstream FlagClient.evaluate, static flag (full details)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum time per contender per round")
    args = parser.parse_args()
    ensure_peers()
    logging.disable(logging.WARNING)  # the peers' "no server" chatter
    users, members = population(args.users)
    sdk = flagstream(members)
    gb_targeted, gb_static = growthbook(members, users)
    unleash_targeted, unleash_static, close = unleash(members, users)
    contenders: dict[str, Check] = {
        OURS: lambda user, context: sdk.evaluate(KEY, user=user, context=context),
        "flagstream FlagClient.is_enabled, 3 rules": lambda user, context: sdk.is_enabled(
            KEY, user=user, context=context
        ),
        "flagstream via OpenFeature provider, 3 rules": ours_openfeature(sdk, users),
        "growthbook eval_feature, 3 rules": gb_targeted,
        "UnleashClient is_enabled, 3 constraints": unleash_targeted,
        OURS_STATIC: lambda user, context: sdk.evaluate(STATIC, user=user),
        "growthbook eval_feature, static flag": gb_static,
        "UnleashClient is_enabled, static flag": unleash_static,
    }
    try:
        answers = {
            "flagstream": [sdk.evaluate(KEY, user=u, context=c).value for u, c in users],
            "growthbook": [gb_targeted(u, c).value for u, c in users],
            "UnleashClient": [unleash_targeted(u, c) for u, c in users],
        }
        reasons = {r.rule for r in (sdk.evaluate(KEY, user=u, context=c) for u, c in users)}
        best: dict[str, float] = dict.fromkeys(contenders, 0.0)
        for r in range(args.rounds):
            for name, check in contenders.items():
                best[name] = max(best[name], rate(check, users, args.seconds))
                print(f"round {r + 1}/{args.rounds}  {name:<58} {best[name]:>12,.0f}/s", file=sys.stderr)
    finally:
        close()
    report(best, answers, reasons, args)


def report(best: dict[str, float], answers: dict[str, list[Any]], rules: set[str | None], args: Any) -> None:
    ours, static = best[OURS], best[OURS_STATIC]
    share = sum(answers["flagstream"]) / len(answers["flagstream"])
    agree = {peer: got == answers["flagstream"] for peer, got in answers.items() if peer != "flagstream"}
    print(
        f"\nin-process evaluation, one boolean flag with 3 targeting rules (a 1,000-id list, a regex, a semver "
        f"comparison), {args.users:,} users with contexts, {share:.1%} on (best of {args.rounds} rounds)\n"
    )
    print(f"| {'contender':<58} | {'evaluations/s':>13} |")
    print(f"|{'-' * 60}|{'-' * 14}:|")
    for name, value in sorted(best.items(), key=lambda item: -item[1]):
        print(f"| {name:<58} | {value:>13,.0f} |")
    print(
        f"\nflagstream full details with 3 rules: {ours:,.0f}/s "
        f"({'meets' if ours >= 300_000 else 'MISSES'} ≥ 300,000/s); static flag: {static:,.0f}/s "
        f"({'meets' if static >= 1_000_000 else 'MISSES'} ≥ 1,000,000/s)"
    )
    print(f"rules that decided: {sorted(r for r in rules if r is not None)} and none for the rest")
    for peer, same in agree.items():
        print(f"same answers as {peer}: {'yes, all' if same else 'NO'} {args.users:,} users")
    RESULTS.mkdir(exist_ok=True)
    body = {"users": args.users, "rounds": args.rounds, "per_second": best, "share_on": share, "same_as": agree}
    (RESULTS / "targeting.json").write_text(json.dumps(body, indent=1))
    ranked = dict(sorted(best.items(), key=lambda item: -item[1]))
    bar_plot(ranked, PLOTS / "targeting.png", unit="evaluations per second (one core, best round)",
             title=f"In-process evaluation with targeting rules, {args.users:,} users")  # fmt: skip
    print(f"wrote {PLOTS / 'targeting.png'}")


if __name__ == "__main__":
    main()
