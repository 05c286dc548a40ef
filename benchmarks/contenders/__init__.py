"""The contenders of ``benchmarks.throughput``, each run as its own process.

Each reads the same environment: the ``CA_*`` settings (bootstrap, topic prefix,
partitions) plus ``BENCH_GROUP`` (a fresh consumer group / app id),
``BENCH_WORKDIR`` (state directory) and ``BENCH_MARK`` (a file the contender
creates when it has processed its first event, so the harness can leave start-up
out of the timed window). They run until terminated; the harness decides when
they are done from their consumer groups' lag.
"""
