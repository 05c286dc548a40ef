-- domain.md 3b (issue 22): each message's human clicks (of click_count, those neither
-- a bot's or preview fetcher's nor within the preview window of its delivering
-- receipt), its phone's country (ISO 3166 alpha-2; ZZ: a number placed nowhere) and,
-- when it failed, the category of its failure cause (docs/failures.md). Rows written
-- before this migration read 0, 'ZZ' and NULL until the message changes again.
-- status is a LowCardinality(String) (0001), so 'unknown' needs no change.
ALTER TABLE {database}.message_log
    ADD COLUMN IF NOT EXISTS human_click_count UInt32 DEFAULT 0 AFTER retry_of;
ALTER TABLE {database}.message_log
    ADD COLUMN IF NOT EXISTS country LowCardinality(String) DEFAULT 'ZZ' AFTER human_click_count;
ALTER TABLE {database}.message_log
    ADD COLUMN IF NOT EXISTS failure_category LowCardinality(Nullable(String)) DEFAULT NULL AFTER country;
