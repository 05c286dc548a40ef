#!/usr/bin/env bash
# The alert-rule tests (tests/unit/deploy/test_alerts.py) run `promtool check rules`
# and `promtool test rules` on deploy/prometheus/alerts.yml; promtool comes with
# Debian's `prometheus` package.
exec bash "$(dirname "${BASH_SOURCE[0]}")/ensure-debian-packages.sh" promtool \
    "for the alert-rule tests" prometheus
