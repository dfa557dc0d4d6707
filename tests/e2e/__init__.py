"""End-to-end flows: what a user of the built distributions does, outside this checkout."""
