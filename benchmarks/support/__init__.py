"""What the scenarios share: servers and sizes, workloads and backlogs, the raw-client
baselines, independent consumers, the child processes (``*_subprocess``), results and their
files."""
