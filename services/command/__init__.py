"""The command service: validates changes, appends them to the event store, relays them to Kafka.

The event store doubles as the transactional outbox, so an accepted change is
durable before anything is published and nothing is ever written twice.
"""
