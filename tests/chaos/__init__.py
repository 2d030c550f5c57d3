"""The chaos rig: haredis, Redis and a client in network namespaces under partitions, kills and
pauses (issue 7). ``python -m tests.chaos --help``; ``make chaos``. Root only."""
