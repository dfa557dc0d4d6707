"""The vocabulary's identifiers as pydantic field types: what the event and request models validate.

Apart from `events.vocabulary` so that the words alone (a CLI's choices) cost no pydantic import.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from events.vocabulary import FLAG_KEY_PATTERN, FLAG_KEY_RULE, MAX_FLAG_KEY, ORG_ID_PATTERN, USER_ID_PATTERN

FlagKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_FLAG_KEY,
        pattern=FLAG_KEY_PATTERN,
        description=f"Flag key, exactly as written (case matters): {FLAG_KEY_RULE}.",
    ),
]
OrgId = Annotated[
    str,
    Field(pattern=ORG_ID_PATTERN, description="Organisation (tenant) id: letters, digits, `_`, `-`."),
]
UserId = Annotated[
    str,
    Field(pattern=USER_ID_PATTERN, description="User id within the organisation."),
]
Percentage = Annotated[int, Field(ge=0, le=100, description="Share of users, 0–100.")]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    Field(description="Why the change was made; required, never blank."),
]
