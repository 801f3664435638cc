"""The outboxkit benchmark suite: ``outboxkit bench --size smoke|small|full``.

Every scenario measures outboxkit against a baseline taken in the same run, checks
correctness (lost, duplicated and out-of-order messages) with an independent consumer, and
writes ``results.json``, ``results.md`` and ``results.png`` under ``benchmarks/results/``.
"""
