"""The outboxkit test suite.

* ``unit/``: no server needed (the core with in-memory fakes, the embedded SQLite store and
  stdout publisher, the command line, the benchmarks' figures);
* ``integration/<server>/``: one plugin (or the test server itself, ``services/``) against a
  real server;
* ``e2e/``: ``outboxkit relay`` processes between a real store and a real broker;
* ``support/``: the servers, their ``OUTBOXKIT_TEST_*`` variables and throwaway resources on
  them (schemas, topics, streams, databases), for the tests and the benchmarks.

Tests that use a server are marked with its name (``postgres``, ``kafka``, ``nats``,
``mongodb``) by ``conftest.py``: ``scripts/test -m "not mongodb"`` runs the others.
"""
