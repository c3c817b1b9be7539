"""Test support, shared by the test modules and reached through the fixtures of tests/conftest.py.

* ``configs``: tiny configs on synthetic data (``TINY``, ``SMALL``, ``write_cfg``), real CIFAR-10 lookup.
* ``runs``: run folders to read (``build_runs``: real tiny runs plus damaged copies), metrics without timing,
  file snapshots.
* ``forkserver``: one process that imports torch once and forks a real ``classbench`` process per command.
* ``stops``: hooks for ``Trainer(after_step=...)``; stopping after step N is ``Trainer(cfg, stop_after=N)``.
* ``data``: small CIFAR archives in the official layout, malicious pickles.
"""
