"""Markdown table, PNG plot and the issue's targets, from a list of results."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.stats import Result, percentile


def write_report(
    folder: Path,
    name: str,
    results: list[Result],
    args: argparse.Namespace,
    rounds: list[dict[str, Result]] | None = None,
    notes: list[str] | None = None,
) -> None:
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
    if rounds:
        lines += [
            "",
            f"Sequential, static batch, 1 and 16 clients (and the peers' one stream, 1 and 16 "
            f"clients) ran in {len(rounds)} interleaved rounds (the table shows the median round); "
            "targets are the median of the per-round ratios:",
        ]
    lines += ["", *check_targets(results, rounds, name), *(notes or [])]
    (folder / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(folder / f"{name}.png", name, results)


def _plot(path: Path, name: str, results: list[Result]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [r.name.replace("4. service HTTP, ", "service ") for r in results]
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


def _ratios(r: dict[str, Result]) -> dict[str, float]:
    seq, static, one, sixteen = r["seq"], r["static"], r["1"], r["16"]
    out = {
        "seq": sixteen.throughput / seq.throughput,
        "static": sixteen.throughput / static.throughput,
        "one": one.throughput / seq.throughput,
        "ttft": percentile(sixteen.ttfts, 50) / percentile(one.ttfts, 50),
    }
    if "cpp1" in r:
        out["cpp1"] = one.throughput / r["cpp1"].throughput
        out["srv16"] = sixteen.throughput / r["srv16"].throughput
    return out


def targets(name: str) -> dict[str, tuple[str, str, float | None]]:
    """The engine-speed issue's targets (``None``: shown, no target)."""
    return {
        "one": ("1 client vs sequential generate (tok/s)", ">=", 1.0),
        "seq": ("16 clients vs sequential generate", ">=", 8.0),
        "static": ("16 clients vs static padded batch", ">=", None),
        "ttft": ("TTFT p50 16 clients / 1 client", "<=", 3.0),
        "cpp1": ("1 client vs llama.cpp one stream", ">=", 0.5 if name == "demo" else 1.0),
        "srv16": ("16 clients vs llama-server 16 clients", ">=", 1.0),
    }


def check_targets(
    results: list[Result], rounds: list[dict[str, Result]] | None = None, name: str = ""
) -> list[str]:
    if not rounds:
        by_name = {r.name: r for r in results}
        one = by_name.get("4. service HTTP, 1 clients")
        sixteen = by_name.get("4. service HTTP, 16 clients")
        if one is None or sixteen is None:
            return []
        rounds = [{"seq": results[0], "static": results[1], "1": one, "16": sixteen}]
    per_round = [_ratios(r) for r in rounds]
    out = []
    for key, (label, op, target) in targets(name).items():
        if key not in per_round[0]:
            continue
        median = statistics.median(r[key] for r in per_round)
        each = ", ".join(f"{v:.3f}" for v in (r[key] for r in per_round))
        if target is None:
            out.append(f"- {label}: {median:.3f}x (rounds: {each})")
            continue
        met = median >= target if op == ">=" else median <= target
        out.append(
            f"- {label}: {median:.3f}x (target {op} {target}x: {'met' if met else 'MISSED'}; "
            f"rounds: {each})"
        )
    return out
