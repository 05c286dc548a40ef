-- The events sink reads the input topics themselves (it read the internal message-events
-- topic before), so a source record is (topic, partition, offset):
-- `count() = uniqExact(source_topic, source_partition, source_offset)` proves the sink
-- wrote each record once. Rows written before this migration have source_topic ''.
ALTER TABLE {database}.events
    ADD COLUMN IF NOT EXISTS source_topic LowCardinality(String) DEFAULT '' AFTER payload;
