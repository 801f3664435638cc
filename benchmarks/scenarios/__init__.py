"""The benchmark scenarios: each module has ``async def run(ctx)`` and adds its measures,
latencies and correctness checks to ``ctx.results`` (see ``docs/benchmarks.md``)."""
