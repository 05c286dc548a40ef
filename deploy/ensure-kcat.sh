#!/usr/bin/env bash
# The schema-registry tests (tests/integration/test_schema_registry.py) fetch the raw
# records of the metric topic with Debian's `kcat` (built without Avro support: the
# tests check the Confluent framing of the bytes it prints).
exec bash "$(dirname "${BASH_SOURCE[0]}")/ensure-debian-packages.sh" kcat \
    "for the schema-registry tests" kcat
