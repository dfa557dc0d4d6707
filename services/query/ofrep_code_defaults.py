"""OFREP's `codeDefaultFlag` (ADR-0006 of `open-feature/protocol`): an answer with no `value`, so that the provider
serves the default written in the application's code.

Off unless `FLAGS_OFREP_CODE_DEFAULTS` is true. When on, an OFREP answer whose reason is `DEFAULT` (no level sets
the flag: the flagstream answer is the flag's off variant) leaves `value` out, keeping `key`, `reason`, `variant`
and `metadata`; the native API and the SDK still answer the off variant's value. Off by default because a
deployment's clients may rely on that value (`get_boolean_value(flag, True)` is False today for a flag set
nowhere); on, the same call answers the caller's `True`.

One switch per process, set by the composition root before the first request (`bootstrap`): the answers are
rendered once into plans and kept, so it is read where they are rendered (`ofrep._success`).
"""

from __future__ import annotations

from flagcore import Evaluation, Reason

__all__ = ["defer_to_code", "deferred"]

_deferring = False


def defer_to_code(enabled: bool) -> None:
    """Whether `DEFAULT` answers defer to the code's default (`FLAGS_OFREP_CODE_DEFAULTS`)."""
    global _deferring
    _deferring = enabled


def deferred(e: Evaluation) -> bool:
    """The answer to `e` is a `codeDefaultFlag`: no `value`."""
    return _deferring and e.reason is Reason.DEFAULT and e.error_code is None
