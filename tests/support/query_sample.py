"""The small world the query API's unit tests ask about: three flags, and acme's settings at every level."""

from __future__ import annotations

from events import Level
from tests.support.eventlog import EventLog

KEY = "ai.insights.enabled"


def sample_log() -> EventLog:
    log = EventLog()
    log.define(KEY, group="ai")
    log.define("platform.meta.enabled", group="platform")
    log.define("platform.google.enabled", group="platform")
    log.system(KEY, False)
    log.system("platform.meta.enabled", True)
    log.org("acme", KEY, True)
    log.rollout(KEY, 30, level=Level.ORG, org="acme")
    log.platform("acme", "tiktok", KEY, True)
    log.user("acme", "u-1", KEY, False)
    log.platform("acme", "google", "platform.google.enabled", True)
    log.platform("acme", "meta", "platform.meta.enabled", False)
    return log
