"""The local test servers behind ``scripts/services`` (standard library only).

``commands`` has the commands (up, down, status, env, logs, clean) and the list of servers;
one module per server (``postgres``, ``kafka``, ``nats``, ``ferretdb``) says how to install,
configure, start and probe it; ``server`` is their base class and ``common`` what they share
(paths, ports, output, processes, logs, Debian packages). ``probes`` is also loaded by the
tests' fixtures (``tests/support/servers.py``), so both agree on what "up" means.
"""
