"""The query service: flag evaluation over HTTP from the read models, with an in-process and a
Redis cache. `python -m services.query` serves it; `services.query.bootstrap` wires it."""
