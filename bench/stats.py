"""Per-configuration measurements and their summary row."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    clean = sorted(v for v in values if not math.isnan(v))
    if not clean:
        return float("nan")
    index = min(len(clean) - 1, max(0, math.ceil(q / 100 * len(clean)) - 1))
    return clean[index]


@dataclass
class Result:
    name: str
    clients: int
    tokens: int = 0
    wall: float = 0.0
    ttfts: list[float] = field(default_factory=list)
    itls: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    peak_rss_mb: float = float("nan")
    note: str = ""

    def add_request(self, tokens: int, ttft: float, itls: list[float], latency: float) -> None:
        self.tokens += tokens
        self.ttfts.append(ttft)
        self.itls += itls
        self.latencies.append(latency)

    @property
    def throughput(self) -> float:
        return self.tokens / self.wall if self.wall > 0 else float("nan")

    def row(self, base: Result | None) -> dict[str, object]:
        ratio = self.throughput / base.throughput if base and base.throughput else float("nan")
        return {
            "config": self.name,
            "clients": self.clients,
            "requests": len(self.latencies),
            "tok/s": round(self.throughput, 1),
            "x baseline 1": round(ratio, 2),
            "TTFT p50 ms": round(percentile(self.ttfts, 50) * 1000, 1),
            "TTFT p99 ms": round(percentile(self.ttfts, 99) * 1000, 1),
            "ITL p50 ms": round(percentile(self.itls, 50) * 1000, 2),
            "ITL p99 ms": round(percentile(self.itls, 99) * 1000, 2),
            "latency p50 s": round(statistics.median(self.latencies), 3)
            if self.latencies
            else None,
            "peak RSS MB": round(self.peak_rss_mb, 0),
            "note": self.note,
        }
