"""Adapters shared by the services: settings, Postgres, Kafka and Redis plumbing."""
