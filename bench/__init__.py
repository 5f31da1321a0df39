"""sluice's benchmarks: `python -m bench` (side by side with nginx, HAProxy, a uvloop + httptools
baseline and the upstream itself; see run.py) and the pytest-benchmark micro benchmarks
(`python -m pytest bench`)."""
