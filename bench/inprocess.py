"""In-process evaluation: flagstream's SDK against peer SDKs' local evaluation, side by side in one run.

    .venv/bin/python -m bench.inprocess [--users 100000] [--rounds 3] [--seconds 1.0]

One boolean flag with a 50% sticky rollout, evaluated for the same 100k users by:
flagstream's `FlagClient.is_enabled` (and `evaluate`, and through its OpenFeature
provider), UnleashClient (bootstrapped, no server), growthbook, the flagd provider
in-process in file mode, launchdarkly-server-sdk with its file data source, and the
bare bucketing formula (one murmur3 hash and a compare). Rounds are interleaved and
the best round of each is kept. Peer SDKs are the `peers` optional dependencies,
installed into this interpreter when missing. Targets: ≥ 3× the fastest
peer, within 3× of the bare formula. Network, metrics and events are off for every SDK.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import mmh3

from bench.plots import bar_plot
from events import FlagDefined, Level, OrgOverrideSet, RolloutPercentageSet
from flagcore import fold
from flagsdk import FlagClient
from tests.support.factories import LogBuilder

KEY = "bench.rollout.enabled"
ORG = "acme"
REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
PLOTS = Path(__file__).resolve().parents[1] / "docs" / "bench"  # committed beside the figures
PEER_MODULES = ("UnleashClient", "growthbook", "openfeature.contrib.provider.flagd", "ldclient")

Check = Callable[[str], bool]  # user → value; what the bench times


def ensure_peers() -> None:
    missing = [module for module in PEER_MODULES if not _importable(module)]
    if missing:
        peers = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["peers"]
        print(f"installing peer SDKs ({', '.join(missing)} missing): {' '.join(peers)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *peers], check=True)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


# --- the contenders ----------------------------------------------------------------------------------


def flagstream() -> FlagClient:
    log = LogBuilder()
    log.extend([
        FlagDefined(flag_key=KEY, group="bench"),
        OrgOverrideSet(flag_key=KEY, org_id=ORG, enabled=True),
        RolloutPercentageSet(flag_key=KEY, level=Level.ORG, org_id=ORG, percentage=50),
    ])
    return FlagClient.from_state(fold(log.events), org_id=ORG)


def bare(user: str) -> bool:
    return mmh3.hash(f"{KEY}:{user}", 0, signed=False) % 100 + 1 <= 50


def unleash() -> tuple[Check, Callable[[], None]]:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    cache = FileCache("bench", directory=tempfile.mkdtemp())
    cache.bootstrap_from_dict({"version": 1, "features": [{
        "name": KEY, "enabled": True, "strategies": [{
            "name": "flexibleRollout",
            "parameters": {"rollout": "50", "stickiness": "userId", "groupId": KEY},
        }],
    }]})
    client = UnleashClient(url="http://127.0.0.1:9", app_name="bench", disable_metrics=True,
                           disable_registration=True, cache=cache)
    client.initialize_client(fetch_toggles=False)
    return (lambda user: client.is_enabled(KEY, {"userId": user})), client.destroy


def growthbook() -> Check:
    from growthbook import GrowthBook

    features = {KEY: {"defaultValue": False, "rules": [{"force": True, "coverage": 0.5, "hashAttribute": "id"}]}}
    gb = GrowthBook(features=features)

    def check(user: str) -> bool:
        gb.set_attributes({"id": user})
        return bool(gb.is_on(KEY))

    return check


def openfeature_client(provider: object, domain: str):  # type: ignore[no-untyped-def]
    from openfeature import api

    api.set_provider(provider, domain)  # type: ignore[arg-type]
    return api.get_client(domain)


def flagd(users: list[str]) -> tuple[Check, Callable[[], None]]:
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext

    path = Path(tempfile.mkdtemp()) / "flags.json"
    path.write_text(json.dumps({"flags": {KEY: {
        "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
        "targeting": {"fractional": [["on", 50], ["off", 50]]},
    }}}))
    provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
    client = openfeature_client(provider, "flagd")
    contexts = {u: EvaluationContext(targeting_key=u) for u in users}  # built once: the evaluation is timed
    return (lambda user: client.get_boolean_value(KEY, False, contexts[user])), provider.shutdown


def launchdarkly(users: list[str]) -> tuple[Check, Callable[[], None]]:
    from ldclient import Context, LDClient
    from ldclient.config import Config
    from ldclient.integrations import Files

    path = Path(tempfile.mkdtemp()) / "flags.json"
    path.write_text(json.dumps({"flags": {KEY: {
        "key": KEY, "on": True, "version": 1, "variations": [True, False], "offVariation": 1,
        "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 50000},
                                                   {"variation": 1, "weight": 50000}]}},
    }}}))
    config = Config(sdk_key="bench", update_processor_class=Files.new_data_source(paths=[str(path)]),
                    send_events=False, diagnostic_opt_out=True)
    client = LDClient(config=config, start_wait=5)
    contexts = {u: Context.create(u) for u in users}
    return (lambda user: client.variation(KEY, contexts[user], False)), client.close


def ours_openfeature(sdk: FlagClient, users: list[str]) -> Check:
    from openfeature.evaluation_context import EvaluationContext

    from flagsdk.openfeature import FlagstreamProvider

    client = openfeature_client(FlagstreamProvider(sdk), "flagstream")
    contexts = {u: EvaluationContext(targeting_key=u) for u in users}
    return lambda user: client.get_boolean_value(KEY, False, contexts[user])


# --- timing --------------------------------------------------------------------------------------------


def rate(check: Check, users: list[str], seconds: float) -> float:
    """Evaluations per second, looping over `users` until `seconds` have passed (whole passes)."""
    done, started = 0, time.perf_counter()
    while True:
        for user in users:
            check(user)
        done += len(users)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum time per contender per round")
    args = parser.parse_args()
    ensure_peers()
    logging.disable(logging.WARNING)  # the peers' "no server" chatter
    users = [f"user-{i}" for i in range(args.users)]
    sdk = flagstream()
    closers: list[Callable[[], None]] = []
    unleash_check, close = unleash()
    closers.append(close)
    flagd_check, close = flagd(users)
    closers.append(close)
    ld_check, close = launchdarkly(users)
    closers.append(close)
    contenders: dict[str, Check] = {
        "bare formula (murmur3 + compare)": bare,
        "flagstream FlagClient.is_enabled": lambda user: sdk.is_enabled(KEY, user=user),
        "flagstream FlagClient.evaluate (with reason)": lambda user: sdk.evaluate(KEY, user=user).value,
        "flagstream via OpenFeature provider": ours_openfeature(sdk, users),
        "growthbook": growthbook(),
        "launchdarkly-server-sdk (file)": ld_check,
        "UnleashClient (bootstrapped)": unleash_check,
        "flagd provider (in-process, file)": flagd_check,
    }
    try:
        shares = {name: sum(check(u) for u in users) / len(users) for name, check in contenders.items()}
        unleash_agrees = all(sdk.is_enabled(KEY, user=u) == unleash_check(u) for u in users)
        best: dict[str, float] = dict.fromkeys(contenders, 0.0)
        for r in range(args.rounds):
            for name, check in contenders.items():
                best[name] = max(best[name], rate(check, users, args.seconds))
                print(f"round {r + 1}/{args.rounds}  {name:<46} {best[name]:>12,.0f}/s", file=sys.stderr)
    finally:
        for close in closers:
            close()
    report(best, shares, unleash_agrees, args)


def report(best: dict[str, float], shares: dict[str, float], unleash_agrees: bool, args: argparse.Namespace) -> None:
    ours = best["flagstream FlagClient.is_enabled"]
    formula = best["bare formula (murmur3 + compare)"]
    peers = {n: v for n, v in best.items() if not n.startswith(("flagstream", "bare"))}
    fastest_peer = max(peers, key=lambda n: peers[n])
    print(f"\nin-process evaluation, one boolean flag with a 50% sticky rollout, {args.users:,} users "
          f"(best of {args.rounds} rounds)\n")
    print(f"| {'contender':<46} | {'evaluations/s':>13} | {'vs fastest peer':>15} | {'share on':>8} |")
    print(f"|{'-' * 48}|{'-' * 14}:|{'-' * 16}:|{'-' * 9}:|")
    for name, value in sorted(best.items(), key=lambda item: -item[1]):
        print(f"| {name:<46} | {value:>13,.0f} | {value / peers[fastest_peer]:>14.2f}× | {shares[name]:>7.1%} |")
    print(f"\nflagstream is_enabled: {ours / peers[fastest_peer]:.2f}× the fastest peer ({fastest_peer}), "
          f"{formula / ours:.2f}× slower than the bare formula "
          f"({'meets' if ours >= 3 * peers[fastest_peer] and formula <= 3 * ours else 'MISSES'} "
          f"≥ 3× fastest peer and within 3× of the formula)")
    print(f"same users in the rollout as UnleashClient: {'yes, all' if unleash_agrees else 'NO'} "
          f"{args.users:,} (same hash, seed and group)")
    RESULTS.mkdir(exist_ok=True)
    body = {"users": args.users, "rounds": args.rounds, "per_second": best, "share_on": shares,
            "same_as_unleash": unleash_agrees}
    (RESULTS / "inprocess.json").write_text(json.dumps(body, indent=1))
    ranked = dict(sorted(best.items(), key=lambda item: -item[1]))
    bar_plot(ranked, PLOTS / "inprocess.png", unit="evaluations per second (one core, best round)",
             title=f"In-process evaluation: 50% sticky rollout, {args.users:,} users")
    print(f"wrote {PLOTS / 'inprocess.png'}")


if __name__ == "__main__":
    main()
