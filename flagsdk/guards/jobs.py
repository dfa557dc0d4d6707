"""A decorator for queue jobs: the flag is checked when the job runs, not when it was queued.

A job queued while its feature was on and run after it was switched off is skipped:
it returns `SKIPPED` and logs why, rather than failing (so the queue does not retry it).
Works on plain and `async` functions alike.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, Final, TypeVar

from flagsdk.client import FlagClient

log = logging.getLogger("flagsdk.jobs")
F = TypeVar("F", bound=Callable[..., Any])
ContextOf = Callable[..., str | None]  # reads the platform or the user from the job's own arguments


class _Skipped:
    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED: Final = _Skipped()


def skip_unless_enabled(
    client: FlagClient | Callable[[], FlagClient],
    flag_key: str,
    *,
    platform: ContextOf | None = None,
    user: ContextOf | None = None,
) -> Callable[[F], F]:
    """`@skip_unless_enabled(flags, "campaign.publishing.enabled", user=lambda campaign_id, owner: owner)`.

    `client` may be a function returning it, for clients made after the jobs are imported.
    """

    def decorate(job: F) -> F:
        def allowed(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
            flags = client if isinstance(client, FlagClient) else client()
            p = None if platform is None else platform(*args, **kwargs)
            u = None if user is None else user(*args, **kwargs)
            if flags.is_enabled(flag_key, platform=p, user=u):
                return True
            log.info("skipping job %s: %s is off (platform=%s, user=%s)", job.__qualname__, flag_key, p, u)
            return False

        if inspect.iscoroutinefunction(job):

            @functools.wraps(job)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return await job(*args, **kwargs) if allowed(args, kwargs) else SKIPPED

            return run_async  # type: ignore[return-value]

        @functools.wraps(job)
        def run(*args: Any, **kwargs: Any) -> Any:
            return job(*args, **kwargs) if allowed(args, kwargs) else SKIPPED

        return run  # type: ignore[return-value]

    return decorate
