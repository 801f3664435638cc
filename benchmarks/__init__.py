"""The outboxkit benchmark suite: ``python -m benchmarks --size smoke|small|full``,
run from the repository's root (it is not part of the installed package).

Every scenario measures outboxkit against a baseline taken in the same run, checks
correctness (lost, duplicated and out-of-order messages) with an independent consumer, and
writes ``results.json``, ``results.md`` and ``results.png`` under ``benchmarks/results/``.
"""
