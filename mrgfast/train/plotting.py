"""Plot of GRPO's reward, MCCS, format reward and KL over steps, from the JSONL metrics log."""

from __future__ import annotations

import json
from pathlib import Path

PANELS = [
    ("reward", ["reward"], "total reward (0.75·MCCS + 0.25·format)"),
    ("mccs", ["rewards/mccs_reward/mean", "rewards/mccs_plus_reward/mean", "rewards/MCCSReward/mean"], "MCCS reward"),
    ("format", ["rewards/format_reward/mean", "rewards/FormatReward/mean"], "format reward"),
    ("kl", ["kl"], "KL(policy ‖ reference)"),
]


def read_metrics(path, stage: str = "grpo") -> dict[int, dict]:
    """Last logged row per step of ``stage`` (a resumed run re-logs steps; the later row wins)."""
    rows: dict[int, dict] = {}
    p = Path(path)
    if not p.is_file():
        return rows
    for line in p.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by kill -9
        if r.get("stage") == stage and ("reward" in r or "loss" in r):
            rows[int(r["step"])] = {**rows.get(int(r["step"]), {}), **r}
    return rows


def plot_grpo(metrics_path, out_png) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path, "grpo")
    if not rows:
        return None
    steps = sorted(rows)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for ax, (_, keys, title) in zip(axes.ravel(), PANELS):
        xs, ys = [], []
        for s in steps:
            key = next((k for k in keys if k in rows[s] and isinstance(rows[s][k], (int, float))), None)
            if key is not None:
                xs.append(s)
                ys.append(rows[s][key])
        ax.set_title(title, fontsize=10)
        if xs:
            ax.plot(xs, ys, marker=".", lw=1.2)
        else:
            ax.text(
                0.5,
                0.5,
                "not logged (beta = 0)" if keys == ["kl"] else "not logged",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    fig.suptitle("mrgfast GRPO")
    fig.tight_layout()
    out_png = Path(out_png)
    from mrgfast.atomic import replacing

    try:
        with replacing(out_png) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return out_png
