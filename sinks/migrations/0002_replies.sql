-- Replies: one row per reply event, append-only, deduplicated on event_id.
-- A reply names its message, not its campaign (domain.md section 1), so a campaign's
-- replies are read by the message ids its message_log rows hold: message_id leads the
-- ORDER BY, and `message_id IN (<the campaign's ids>)` uses the primary index.
-- Replays: the insert_deduplication_token drops a replayed batch (within the window);
-- ReplacingMergeTree collapses any other copy of an event (same message_id, event_id)
-- on merge, so readers use FINAL. A duplicate event shares occurred_at, hence its
-- monthly partition, which replacing needs. TTL: set at start-up (sinks/retention.py).
CREATE TABLE IF NOT EXISTS {database}.replies
(
    event_id    String,
    message_id  String,
    contact_id  String,
    phone       String,
    body        String,
    replied_at  DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(replied_at)
ORDER BY (message_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
