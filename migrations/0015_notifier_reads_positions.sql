-- The notifier measures the projector's lag for its "projector lag" alert (services/notifier/positions.py):
-- the topic's end offsets against the positions the projector has applied. projector_offsets holds
-- positions only, no tenant data (as 0004 grants the query service).

GRANT SELECT (consumer_group, topic, partition, next_offset) ON projector_offsets TO flags_notifier;
