"""200 concurrent streaming clients, a third hanging up mid-stream (bounded, 127.0.0.1 only)."""

from __future__ import annotations

import asyncio

from bench.loadtest import run_load
from tests.server import RunningServer


def test_200_streams_with_disconnects_leak_nothing(server: RunningServer):
    report = asyncio.run(run_load(server.url, clients=200, hang_up_every=3, max_tokens=8))
    assert report.lost == 0, report.outcomes
    assert report.outcomes["completed"] >= 120
    assert report.outcomes["disconnected"] >= 60
    assert all(code == 200 for code in report.health_during)
    assert report.running_after == 0 and report.waiting_after == 0
    # Memory returns near where it started (generous bound: allocator caches stay).
    assert report.rss_after_mb < report.rss_before_mb * 1.5 + 200
