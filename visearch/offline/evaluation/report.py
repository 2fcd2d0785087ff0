"""The evaluation report: ``results.json`` (every figure), ``report.md`` (tables) and PNG plots.

Plots (matplotlib, Agg backend, from the ``eval`` extra): ``pr_<suite>.png``, the 11-point interpolated
precision-recall curve of each profile; ``ablation.png``, nDCG@k of the blended profile and of each
``blended-no-<factor>`` profile per suite (how much each factor adds).
"""

from __future__ import annotations

import json
from pathlib import Path

from visearch.offline.evaluation.metrics import HIT_K
from visearch.offline.evaluation.runner import ABLATION_PREFIX

HEADLINE = ("nDCG@{k}", "recall@{k}", "precision@{k}", "mAP", "MRR", f"hit@{HIT_K}", f"hub@{HIT_K}")


def _columns(k: int) -> list[str]:
    return [c.format(k=k) for c in HEADLINE]


def _figure(summary: dict, column: str) -> str:
    return f"{summary[column]:.3f}" if column in summary else "-"


def markdown(result: dict) -> str:
    """report.md: one table per suite (profile x metric; hub@3 = the share of queries whose first 3 hold the
    hub image, named in the last column), the open / closed split of open-vocabulary suites, then what each
    factor adds to nDCG@k."""
    k = result["k"]
    cols = _columns(k)
    lines = [
        f"# visearch eval (k = {k}, lists of {result['depth']})",
        "",
        "Blended weights: " + ", ".join(f"{f} {w:g}" for f, w in result["blended_weights"].items() if w),
        "",
    ]
    for name, suite in result["suites"].items():
        lines += [
            f"## {name}",
            "",
            suite["description"] + f" (ingest {suite['ingest']['seconds']} s).",
            "",
            "| profile | " + " | ".join(cols) + " | hub image | median ms |",
            "|---|" + "---:|" * len(cols) + "---|---:|",
        ]
        for profile, run in suite["profiles"].items():
            s = run["summary"]
            lines.append(
                f"| {profile} | "
                + " | ".join(_figure(s, c) for c in cols)
                + f" | {s.get('hub_image') or '-'} | {s['median_took_ms']:.0f} |"
            )
        split = [
            (profile, run["summary"]["by_open"])
            for profile, run in suite["profiles"].items()
            if "by_open" in run["summary"]
        ]
        if split:
            lines += [
                "",
                f"Open-vocabulary queries (no ImageNet-1k class name) against the others, nDCG@{k} / "
                f"hit@{HIT_K}: "
                + "; ".join(
                    f"{profile}: "
                    + ", ".join(
                        f"{name} ({g['queries']}) {g[f'nDCG@{k}']:.3f} / {g[f'hit@{HIT_K}']:.3f}"
                        for name, g in groups.items()
                    )
                    for profile, groups in split
                ),
            ]
        deltas = ablation_deltas(suite, k)
        if deltas:
            lines += [
                "",
                f"Factor ablation: nDCG@{k} of blended minus nDCG@{k} without the factor "
                "(positive = the factor helps): " + ", ".join(f"{f} {d:+.3f}" for f, d in deltas.items()),
            ]
        lines.append("")
    return "\n".join(lines)


def ablation_deltas(suite: dict, k: int) -> dict[str, float]:
    """factor -> nDCG@k(blended) - nDCG@k(blended-no-factor), for the ablations that were run."""
    runs = suite["profiles"]
    if "blended" not in runs:
        return {}
    full = runs["blended"]["summary"][f"nDCG@{k}"]
    return {
        name.removeprefix(ABLATION_PREFIX): full - run["summary"][f"nDCG@{k}"]
        for name, run in runs.items()
        if name.startswith(ABLATION_PREFIX)
    }


def plots(result: dict, out: Path) -> list[Path]:
    """Write the PNG plots into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, levels, written = result["k"], result["recall_levels"], []
    for name, suite in result["suites"].items():
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        for profile, run in suite["profiles"].items():
            main = not profile.startswith(ABLATION_PREFIX)
            ax.plot(
                levels,
                run["summary"]["pr_curve"],
                marker="o" if main else None,
                linewidth=2 if main else 0.8,
                alpha=1.0 if main else 0.6,
                label=f"{profile} (mAP {run['summary']['mAP']:.3f})",
            )
        ax.set(
            xlabel="recall",
            ylabel="interpolated precision",
            xlim=(0, 1),
            ylim=(0, 1.02),
            title=f"{name}: 11-point precision-recall ({suite['queries']} queries)",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
        path = out / f"pr_{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    suites = list(result["suites"])
    bars = [
        p for p in result["profiles"] if p in ("visual_only", "blended", "blended_rrf") or p.startswith(ABLATION_PREFIX)
    ]
    if suites and bars:
        fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(bars) * len(suites) ** 0.5 + 3), 4.8))
        width = 0.8 / len(suites)
        for n, name in enumerate(suites):
            runs = result["suites"][name]["profiles"]
            values = [runs[p]["summary"][f"nDCG@{k}"] if p in runs else 0.0 for p in bars]
            ax.bar([i + n * width - 0.4 + width / 2 for i in range(len(bars))], values, width, label=name)
        ax.set_xticks(
            range(len(bars)), [p.replace(ABLATION_PREFIX, "no ") for p in bars], rotation=40, ha="right", fontsize=8
        )
        ax.set(ylabel=f"nDCG@{k}", ylim=(0, 1.05), title="Ranking profiles and per-factor ablation")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        path = out / "ablation.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(result: dict, out: Path, with_plots: bool = True) -> dict[str, Path]:
    """Write results.json, report.md and (``with_plots``) the PNGs into ``out`` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(result, indent=2))
    paths["markdown"].write_text(markdown(result))
    if with_plots:
        for path in plots(result, out):
            paths[path.stem] = path
    return paths
