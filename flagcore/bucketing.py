"""Sticky percentage bucketing, byte-compatible with Unleash's gradual rollout.

Unleash computes `murmur3_x86_32("{group}:{id}", seed=0) % 100 + 1` with the
flag name as group; using the same formula keeps users in their buckets when
they migrate from Unleash.
"""

from __future__ import annotations

from collections.abc import Callable

import mmh3

_hash = mmh3.hash


def sticky_point(flag_key: str, subject_id: str, seed: int, modulus: int) -> int:
    """`murmur3_x86_32("{flag}:{id}", seed) % modulus + 1`: Unleash's stickiness, for rollouts and variant arms."""
    return _hash(f"{flag_key}:{subject_id}", seed, False) % modulus + 1


def bucket(flag_key: str, subject_id: str) -> int:
    """The subject's bucket for this flag, 1–100."""
    return sticky_point(flag_key, subject_id, 0, 100)


def in_rollout(flag_key: str, subject_id: str, percentage: int) -> bool:
    return percentage > 0 and bucket(flag_key, subject_id) <= percentage


def rollout_test(flag_key: str, percentage: int, tenant_id: str) -> Callable[[str | None, str | None], bool]:
    """`in_rollout` for one flag, percentage and tenant, as one hash and a compare: what compiled plans call.

    It takes (user, platform) as a plan's `enabled` does: no user means the tenant itself is the subject;
    the platform is the plan's business, not the bucket's. `bucket <= percentage` is `hash % 100 < percentage`,
    which is also false for 0%.
    """
    prefix = flag_key + ":"
    tenant_key = prefix + tenant_id
    hash32 = _hash  # a closure cell, read faster than a module global on this path

    def inside(user: str | None, platform: str | None = None) -> bool:
        return hash32(tenant_key if user is None else prefix + user, 0, False) % 100 < percentage

    return inside
