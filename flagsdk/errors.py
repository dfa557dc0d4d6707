"""The SDK's exception tree. Evaluation never raises: only starting a client can."""


class SdkError(Exception):
    """Base of every error `flagsdk` raises."""


class BootstrapError(SdkError):
    """Neither the query service nor a snapshot file gave the client a state to start from."""


class SnapshotError(SdkError):
    """A bootstrap document (from the query service or a file) is not one this SDK can read."""
