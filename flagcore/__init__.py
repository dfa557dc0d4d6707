"""The pure core: flag model, the fold of events into state, and evaluation.

No I/O and no Kafka, Postgres or Redis imports: the query service and the
in-process SDK both run this exact code, so they cannot disagree.
"""

from flagcore.bucketing import bucket, in_rollout
from flagcore.catalog import SEED_FLAGS, SeedFlag
from flagcore.errors import FlagError, InvalidTransition
from flagcore.evaluation import ErrorCode, Evaluation, Reason, evaluate, evaluate_all
from flagcore.model import Catalog, Definition, EventRef, Setting, TenantRules
from flagcore.platforms import enabled_platforms, is_platform_enabled, platform_flag
from flagcore.state import FlagState, StreamHead, fold
from flagcore.transitions import transition

__all__ = [
    "SEED_FLAGS",
    "Catalog",
    "Definition",
    "ErrorCode",
    "Evaluation",
    "EventRef",
    "FlagError",
    "FlagState",
    "InvalidTransition",
    "Reason",
    "SeedFlag",
    "Setting",
    "StreamHead",
    "TenantRules",
    "bucket",
    "enabled_platforms",
    "evaluate",
    "evaluate_all",
    "fold",
    "in_rollout",
    "is_platform_enabled",
    "platform_flag",
    "transition",
]
