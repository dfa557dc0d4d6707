"""Sticky percentage bucketing, byte-compatible with Unleash's gradual rollout.

Unleash computes `murmur3_x86_32("{group}:{id}", seed=0) % 100 + 1` with the
flag name as group; using the same formula keeps users in their buckets when
they migrate from Unleash.
"""

from __future__ import annotations

import mmh3


def bucket(flag_key: str, subject_id: str) -> int:
    """The subject's bucket for this flag, 1–100."""
    return mmh3.hash(f"{flag_key}:{subject_id}", 0, signed=False) % 100 + 1


def in_rollout(flag_key: str, subject_id: str, percentage: int) -> bool:
    return percentage > 0 and bucket(flag_key, subject_id) <= percentage
