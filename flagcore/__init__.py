"""The pure core: flag model, the fold of events into state, and evaluation.

No I/O and no Kafka, Postgres or Redis imports: the query service and the
in-process SDK both run this exact code, so they cannot disagree.
"""

from flagcore.bucketing import bucket, in_rollout
from flagcore.catalog import SEED_FLAGS, SeedFlag
from flagcore.errors import FlagError, InvalidTransition
from flagcore.evaluation import ErrorCode, Evaluation, Reason, evaluate, evaluate_all, served
from flagcore.instants import format_instant, parse_instant
from flagcore.lifecycle import StaleFlag, stale_flags
from flagcore.model import Catalog, Definition, EventRef, ScheduledStep, Setting, TenantRules, Variant
from flagcore.platforms import enabled_platforms, is_platform_enabled, platform_flag
from flagcore.state import FlagState, StreamHead, fold
from flagcore.transitions import caught_up, transition
from flagcore.variants import VARIANT_SEED, select_variant, variant_bucket

__all__ = [
    "SEED_FLAGS",
    "VARIANT_SEED",
    "Catalog",
    "Definition",
    "ErrorCode",
    "Evaluation",
    "EventRef",
    "FlagError",
    "FlagState",
    "InvalidTransition",
    "Reason",
    "ScheduledStep",
    "SeedFlag",
    "Setting",
    "StaleFlag",
    "StreamHead",
    "TenantRules",
    "Variant",
    "bucket",
    "caught_up",
    "enabled_platforms",
    "evaluate",
    "evaluate_all",
    "fold",
    "format_instant",
    "in_rollout",
    "is_platform_enabled",
    "parse_instant",
    "platform_flag",
    "select_variant",
    "served",
    "stale_flags",
    "transition",
    "variant_bucket",
]
