-- Link clicks: one row per click event, append-only, deduplicated on event_id.
-- A click resolves to its message only (tracked links are per recipient, domain.md
-- section 1); who clicked comes from message_log by message_id, which leads the
-- ORDER BY for the same per-campaign reads as replies (see 0002_replies.sql).
-- user_agent stays a plain String: real user agents are too many for LowCardinality.
CREATE TABLE IF NOT EXISTS {database}.link_clicks
(
    event_id    String,
    message_id  String,
    link_id     String,
    clicked_at  DateTime64(3, 'UTC'),
    user_agent  Nullable(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(clicked_at)
ORDER BY (message_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
