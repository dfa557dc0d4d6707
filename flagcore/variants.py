"""Sticky variant assignment for experiments, identical to Unleash's.

Unleash (its Rust engine, yggdrasil, which every current SDK runs) computes
`murmur3_x86_32("{group}:{id}", seed=86028157) % total_weight + 1` with the flag
name as group, then takes the first variant whose cumulative weight reaches it.
The seed differs from the rollout's (0) so that being in a rollout and being in
a variant are independent. Same formula, same arms: users keep their variant when
they migrate from Unleash.
"""

from __future__ import annotations

from collections.abc import Sequence

from flagcore.bucketing import sticky_point
from flagcore.model import Variant

VARIANT_SEED = 86028157


def variant_bucket(flag_key: str, subject_id: str, total_weight: int) -> int:
    """The subject's point on the weight line, 1–`total_weight`."""
    return sticky_point(flag_key, subject_id, VARIANT_SEED, total_weight)


def select_variant(flag_key: str, subject_id: str, variants: Sequence[Variant]) -> Variant | None:
    """The subject's variant; None when there are none (or every weight is 0)."""
    total = sum(v.weight for v in variants)
    if total <= 0:
        return None
    point = variant_bucket(flag_key, subject_id, total)
    reached = 0
    for variant in variants:
        reached += variant.weight
        if point <= reached:
            return variant
    return None  # pragma: no cover - unreachable: the last cumulative weight is the total
