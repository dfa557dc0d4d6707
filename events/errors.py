"""The wire contract's exception tree."""


class EventError(Exception):
    """Base of every error raised by the `events` package."""


class DecodeError(EventError):
    """A message is not a valid event; `reason` says why (it goes to the dead-letter topic)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
