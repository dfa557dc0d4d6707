"""The pure core's exception tree."""


class FlagError(Exception):
    """Base of every error raised by `flagcore`."""


class InvalidTransition(FlagError):
    """A change that cannot apply to its stream's current value."""
