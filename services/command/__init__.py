"""The command service: validates changes, appends them to the event store, relays them to Kafka,
and serves the audit trail of that store (history, rollback, time travel).

The event store doubles as the transactional outbox, so an accepted change is
durable before anything is published and nothing is ever written twice. Every SQL
statement over it lives in `eventstore/`; time travel and its snapshot job in `timetravel/`.
"""
