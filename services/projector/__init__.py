"""The projector: Kafka change log → Postgres read models, exactly once, with dead letters
and Redis invalidation. `python -m services.projector` runs it (`bootstrap.build_app`)."""
