"""archc's benchmarks (issue 7): run them all with `python benchmarks/run.py`."""
