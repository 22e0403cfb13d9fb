"""Markdown table, PNG plot and the issue's targets, from a list of results."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.stats import Result, percentile


def write_report(folder: Path, name: str, results: list[Result], args: argparse.Namespace) -> None:
    base = results[0]
    rows = [r.row(base) for r in results]
    header = list(rows[0])
    lines = [
        f"# {name}: {args.num_prompts} prompts x {args.new_tokens} new tokens",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    lines += ["", *check_targets(results)]
    (folder / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(folder / f"{name}.png", name, results)


def _plot(path: Path, name: str, results: list[Result]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [r.name.replace("4. service HTTP, ", "HTTP ") for r in results]
    axes[0].barh(labels, [r.throughput for r in results], color="tab:blue")
    axes[0].set_xlabel("generated tokens/s (aggregate)")
    axes[0].invert_yaxis()
    axes[1].barh(labels, [percentile(r.ttfts, 50) * 1000 for r in results], color="tab:orange")
    axes[1].set_xlabel("time to first token p50 (ms)")
    axes[1].invert_yaxis()
    fig.suptitle(f"gpt-service benchmark: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def check_targets(results: list[Result]) -> list[str]:
    by_name = {r.name: r for r in results}
    seq, static = results[0], results[1]
    one = by_name.get("4. service HTTP, 1 clients")
    sixteen = by_name.get("4. service HTTP, 16 clients")
    out = []
    if sixteen:
        out.append(
            f"- 16 clients vs sequential: {sixteen.throughput / seq.throughput:.2f}x (target >= 6x)"
        )
        out.append(
            f"- 16 clients vs static batch: {sixteen.throughput / static.throughput:.2f}x (target >= 0.8x)"
        )
    if one:
        ratio = percentile(one.latencies, 50) / percentile(seq.latencies, 50)
        out.append(f"- 1 client latency vs sequential generate: {ratio:.2f}x (target <= 1.15x)")
    if one and sixteen:
        ratio = percentile(sixteen.ttfts, 50) / percentile(one.ttfts, 50)
        out.append(f"- TTFT p50 16 clients / 1 client: {ratio:.2f}x (target <= 3x)")
    return out
