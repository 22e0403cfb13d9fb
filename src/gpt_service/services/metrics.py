"""Prometheus metrics (prometheus-client), one registry per app so tests can build many apps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gpt_service.engine.types import Completion, StreamDelta

if TYPE_CHECKING:
    from gpt_service.services.container import Services
    from gpt_service.store.jobs import JobStore
    from gpt_service.store.leases import LeaseKeeper

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)


class _StateCollector(Collector):
    """Gauges read at scrape time from the live services (no bookkeeping on the hot path)."""

    def __init__(self, services: Callable[[], Services | None]) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        services = self.services()  # None until the app has started
        queue = GaugeMetricFamily("gpt_queue_depth", "requests waiting per model", labels=["model"])
        running = GaugeMetricFamily(
            "gpt_running_sequences", "sequences in the running batch", labels=["model"]
        )
        loaded = GaugeMetricFamily("gpt_loaded_models", "models loaded")
        models = list(services.registry.models.values()) if services else []
        for m in models:
            queue.add_metric([m.name], m.num_waiting)
            running.add_metric([m.name], m.num_running)
        loaded.add_metric([], len(models))
        yield from (queue, running, loaded)
        yield from _replica_metrics(models)
        if services is None:
            return
        yield from _store_metrics(services.store, services.leases)
        proxied = GaugeMetricFamily("gpt_ollama_proxied", "proxied Ollama calls", labels=["kind"])
        for key, value in services.ollama_upstream.counters().items():
            if isinstance(value, int | float):
                proxied.add_metric([key], value)
        yield proxied


def _store_metrics(store: JobStore, leases: LeaseKeeper) -> Iterator[GaugeMetricFamily]:
    up = GaugeMetricFamily("gpt_store_up", "job store reachable (1) or not", labels=["engine"])
    reachable = store.ping()
    up.add_metric([store.dialect], 1 if reachable else 0)
    yield up
    if not reachable:
        return
    jobs = GaugeMetricFamily(
        "gpt_jobs", "training and evaluation jobs by status", labels=["kind", "status"]
    )
    for kind in ("train", "eval"):
        for status, count in store.count_by_status(kind).items():
            jobs.add_metric([kind, status], count)
    yield jobs
    yield GaugeMetricFamily(
        "gpt_store_queue_depth", "queued jobs, all replicas", value=store.queue_depth()
    )
    yield GaugeMetricFamily(
        "gpt_store_leases_held",
        "running jobs whose lease this replica holds",
        value=store.leases_held(leases.owner),
    )


# Counters (exposed with ``_total``) and gauges of each remote replica: (help, is_counter).
_REPLICA_METRICS = {
    "requests": ("requests sent to a remote replica", True),
    "errors": ("failed requests (connect failures included) of a remote replica", True),
    "latency_seconds": ("summed request latency of a remote replica", True),
    "outstanding": ("requests in flight to a remote replica", False),
    "up": ("1 while a remote replica is in rotation", False),
}


def _replica_metrics(models: list[Any]) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    families = {
        key: (CounterMetricFamily if is_counter else GaugeMetricFamily)(
            f"gpt_remote_replica_{key}", text, labels=["model", "replica"]
        )
        for key, (text, is_counter) in _REPLICA_METRICS.items()
    }
    for m in models:
        for r in getattr(getattr(m, "pool", None), "replicas", []):
            values = {
                "requests": r.requests,
                "errors": r.errors,
                "latency_seconds": round(r.latency_seconds_total, 6),
                "outstanding": r.outstanding,
                "up": int(r.is_up),
            }
            for key, value in values.items():
                families[key].add_metric([m.name, r.url], value)  # url: credentials redacted
    yield from families.values()


class Metrics:
    """The app's Prometheus registry: counters fed by the hooks below (HTTP middleware,
    generation service), gauges read from ``services`` at scrape time once it is set."""

    def __init__(self) -> None:
        self.services: Services | None = None  # set by the app once every service is built
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gpt_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "gpt_http_request_duration_seconds",
            "HTTP latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("gpt_prompt_tokens", "prompt tokens", ["model"], registry=r)
        self.generated_tokens = Counter(
            "gpt_generated_tokens", "generated tokens", ["model"], registry=r
        )
        self.generations = Counter(
            "gpt_generations", "finished generations", ["model", "finish_reason"], registry=r
        )
        self.ttft = Histogram(
            "gpt_time_to_first_token_seconds",
            "time to first token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "gpt_inter_token_latency_seconds",
            "mean time between tokens of a request",
            ["model"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        r.register(_StateCollector(lambda: self.services))
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU seconds, open fds

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ---- hooks ---------------------------------------------------------------------------
    def on_http(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def _record(
        self,
        model: str,
        prompt: int,
        generated: int,
        reason: str,
        first: float | None,
        total: float,
    ) -> None:
        self.prompt_tokens.labels(model).inc(prompt)
        self.generated_tokens.labels(model).inc(generated)
        self.generations.labels(model, reason).inc()
        if first is not None:
            self.ttft.labels(model).observe(first)
            if generated > 1:
                self.itl.labels(model).observe((total - first) / (generated - 1))

    def on_completion(self, model: str, c: Completion) -> None:
        self._record(
            model,
            c.prompt_tokens,
            c.completion_tokens,
            c.finish_reason,
            c.first_token_seconds,
            c.total_seconds,
        )

    def on_stream_end(
        self, model: str, final: StreamDelta, first: float | None, total: float
    ) -> None:
        reason = final.finish_reason or "stop"
        self._record(model, final.prompt_tokens, final.completion_tokens, reason, first, total)
