"""The seed catalogue: the design notes' 34 flags in six groups, each with a kind and an owner.

Kinds follow Fowler: the platform integrations are ops flags (each has a kill
switch for an outage at the platform), plan features are permission flags,
unfinished features are release flags, and the AI features whose value is still
being measured are experiments with their arms (weights in thousandths).
Loaded with `flagctl catalog load`, which sends each entry as ordinary
commands, so the catalogue is in the log like any other change.
"""

from __future__ import annotations

from dataclasses import dataclass

from events import FlagKind


@dataclass(frozen=True, slots=True)
class SeedFlag:
    key: str
    group: str
    kind: FlagKind
    owner: str
    description: str
    default_on: bool = False
    variants: tuple[tuple[str, int], ...] = ()  # (name, weight in thousandths) of an experiment


def _group(group: str, kind: FlagKind, owner: str, rows: list[tuple[str, str, bool]]) -> list[SeedFlag]:
    return [SeedFlag(key, group, kind, owner, text, on) for key, text, on in rows]


def _experiment(key: str, owner: str, description: str, arms: tuple[tuple[str, int], ...]) -> list[SeedFlag]:
    return [SeedFlag(key, key.split(".", 1)[0], FlagKind.EXPERIMENT, owner, description, False, arms)]


SEED_FLAGS: tuple[SeedFlag, ...] = tuple(
    _group("platform", FlagKind.OPS, "platform-team", [
        ("platform.meta.enabled", "Meta Ads integration", True),
        ("platform.google.enabled", "Google Ads integration", False),
        ("platform.tiktok.enabled", "TikTok Ads integration", False),
        ("platform.linkedin.enabled", "LinkedIn Ads integration", False),
        ("platform.twitter.enabled", "X/Twitter Ads integration", False),
        ("platform.snapchat.enabled", "Snapchat Ads integration", False),
    ])
    + _group("campaign", FlagKind.RELEASE, "campaigns-team", [
        ("campaign.creation.enabled", "Create campaigns", True),
        ("campaign.editing.enabled", "Edit campaigns", True),
        ("campaign.publishing.enabled", "Publish campaigns to platforms", False),
        ("campaign.scheduling.enabled", "Schedule posts", False),
        ("campaign.bulk-operations.enabled", "Bulk operations on campaigns", False),
        ("campaign.duplication.enabled", "Duplicate campaigns", False),
        ("campaign.templates.enabled", "Campaign templates", False),
    ])
    + _group("ai", FlagKind.RELEASE, "ai-team", [
        ("ai.semantic-search.enabled", "Semantic search", False),
        ("ai.insights.enabled", "AI insights", False),
        ("ai.audience-expansion.enabled", "Audience expansion", False),
    ])
    + _experiment("ai.auto-optimization.enabled", "ai-team", "Automatic campaign optimisation",
                  (("control", 500), ("bandit", 500)))
    + _experiment("ai.best-time-analysis.enabled", "ai-team", "Best time to post analysis",
                  (("control", 340), ("heuristic", 330), ("model", 330)))
    + _group("analytics", FlagKind.RELEASE, "analytics-team", [
        ("analytics.platform-metrics.enabled", "Platform metrics", False),
        ("analytics.engagement.enabled", "Engagement analytics", False),
        ("analytics.roi-tracking.enabled", "ROI tracking", False),
        ("analytics.predictions.enabled", "Predictive analytics", False),
    ])
    + _group("social", FlagKind.RELEASE, "social-team", [
        ("social.instagram.enabled", "Instagram publishing", False),
        ("social.facebook.enabled", "Facebook publishing", False),
        ("social.pinterest.enabled", "Pinterest publishing", False),
        ("social.linkedin-posts.enabled", "LinkedIn posts", False),
        ("social.comments.enabled", "Comment management", False),
        ("social.dms.enabled", "Direct messages", False),
    ])
    + _group("advanced", FlagKind.PERMISSION, "core-team", [
        ("team-management.enabled", "Team management", False),
        ("approval-workflow.enabled", "Approval workflow", False),
        ("custom-audiences.enabled", "Custom audiences", False),
        ("budget-optimization.enabled", "Budget optimisation", False),
        ("ad-creative-ai.enabled", "AI ad creatives", False),
        ("content-calendar.enabled", "Content calendar", False),
    ])
)
