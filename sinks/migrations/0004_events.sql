-- Raw input events for audit: one row per record of the internal message-events topic
-- (every valid input event, duplicates included), with the source partition and offset
-- that carried it, so `count() = uniqExact(source_partition, source_offset)` proves the
-- sink wrote each record once. FINAL collapses repeats of an event_id (same message_id,
-- same occurred_at, so the same partition). payload: the event as JSON (its Avro fields).
-- Ordered by message for "what happened to this message"; per campaign, join message_log.
CREATE TABLE IF NOT EXISTS {database}.events
(
    event_id         String,
    message_id       String,
    event_type       LowCardinality(String),
    occurred_at      DateTime64(3, 'UTC'),
    payload          String,
    source_partition UInt32,
    source_offset    UInt64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (message_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
