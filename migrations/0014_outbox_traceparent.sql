-- The trace context of the request that appended an event (W3C traceparent, issue 15), kept with
-- its outbox row so the relay can put it in the Kafka record's headers. NULL when the change was
-- not traced. Not part of the event: the body (and so the hash) is unchanged, and nothing but the
-- relay reads it. flags_command already inserts and selects every column of event_store.

ALTER TABLE event_store ADD COLUMN traceparent text;
