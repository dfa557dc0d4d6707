"""The projector: Kafka change log → Postgres read models, exactly once, with dead letters
and Redis invalidation. `python -m services.projector` runs it."""

from services.projector.app import create_app

__all__ = ["create_app"]
