"""The query service: flag evaluation over HTTP from the read models, with an in-process and a
Redis cache. `python -m services.query` serves it."""

from services.query.app import create_app

__all__ = ["create_app"]
