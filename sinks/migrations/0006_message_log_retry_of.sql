-- domain.md 3b: a retry's row names the message it retries (its `sent` event's
-- retry_of), so the log shows a failed message's attempts. Rows written before this
-- migration, and first attempts, have NULL.
ALTER TABLE {database}.message_log
    ADD COLUMN IF NOT EXISTS retry_of Nullable(String) DEFAULT NULL AFTER version;
