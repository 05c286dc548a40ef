-- The message log: one row per message, latest state wins.
-- ReplacingMergeTree(version) collapses replays and older states on merge; readers use FINAL.
-- non_replicated_deduplication_window makes a replayed insert carrying the same
-- insert_deduplication_token a no-op (reliability.md, "Idempotent sink").
-- Keep the window larger than the number of inserts that can happen before a replay.
CREATE TABLE IF NOT EXISTS {database}.message_log
(
    message_id        String,
    campaign_id       String,
    variant           LowCardinality(Nullable(String)),
    contact_id        String,
    contact_name      Nullable(String),
    phone             String,
    status            LowCardinality(String),
    sent_at           DateTime64(3, 'UTC'),
    delivered_at      Nullable(DateTime64(3, 'UTC')),
    failed_at         Nullable(DateTime64(3, 'UTC')),
    error_code        LowCardinality(Nullable(String)),
    error_description Nullable(String),
    carrier           LowCardinality(Nullable(String)),
    segments          UInt32,
    click_count       UInt32,
    first_click_at    Nullable(DateTime64(3, 'UTC')),
    last_click_at     Nullable(DateTime64(3, 'UTC')),
    reply_count       UInt32,
    last_reply_at     Nullable(DateTime64(3, 'UTC')),
    updated_at        DateTime64(3, 'UTC'),
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (campaign_id, message_id)
SETTINGS non_replicated_deduplication_window = 1000;
