"""The versions an interpreter runs the benchmarks with: `python -m benchmarks.machine --worker {}`."""

from __future__ import annotations

from .common import interpreter_details, worker_main


def worker(payload: dict) -> dict:
    return interpreter_details()


if __name__ == "__main__":
    worker_main(worker)
