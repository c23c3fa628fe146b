"""Figures for the report (matplotlib, PNG). Each function takes tables, writes one file."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_replace  # noqa: E402


def _save(fig, path):
    atomic_replace(lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"), path)
    plt.close(fig)


def merged_vs_finetuned(df, picked: str, corr: dict, path, calibrated=None) -> None:
    """df: mask, accuracy (merged, val), val_accuracy (mixture fine-tune), size. `calibrated` (size
    calibration on): mask, calibrated, finetuned (the selection metric), size; drawn in a second panel."""
    if calibrated is None:
        fig, ax = plt.subplots(figsize=(5.5, 5))
    else:
        fig, (ax, cx) = plt.subplots(1, 2, figsize=(11, 5))
        c = corr["calibrated"]
        cx.scatter(calibrated["calibrated"], calibrated["finetuned"], c=calibrated["size"], cmap="viridis", s=28, alpha=0.8)
        p = calibrated[calibrated["mask"] == picked]
        cx.scatter(p["calibrated"], p["finetuned"], s=160, facecolors="none", edgecolors="red", linewidths=2)
        lo = min(calibrated["calibrated"].min(), calibrated["finetuned"].min())
        hi = max(calibrated["calibrated"].max(), calibrated["finetuned"].max())
        cx.plot([lo, hi], [lo, hi], ls=":", c="grey", lw=1)
        cx.set_xlabel(f"size-calibrated prediction: target val {c['metric']}")
        cx.set_ylabel(f"mixture fine-tune: target val {c['metric']}")
        held = c.get("pearson_r_not_anchors")
        cx.set_title(f"calibrated: r = {c['pearson_r']:.2f}" + ("" if held is None else f" (not anchors: {held:.2f})"))
    sc = ax.scatter(df["accuracy"], df["val_accuracy"], c=df["size"], cmap="viridis", s=28, alpha=0.8)
    fig.colorbar(sc, ax=ax, label="datasets in the mixture", ticks=sorted(df["size"].unique()))
    p = df[df["mask"] == picked]
    ax.scatter(p["accuracy"], p["val_accuracy"], s=160, facecolors="none", edgecolors="red", linewidths=2, label=f"picked: {picked}")
    lo = min(df["accuracy"].min(), df["val_accuracy"].min())
    hi = max(df["accuracy"].max(), df["val_accuracy"].max())
    ax.plot([lo, hi], [lo, hi], ls=":", c="grey", lw=1)
    ax.set_xlabel("merged model: target val accuracy")
    ax.set_ylabel("mixture fine-tune: target val accuracy")
    ax.set_title(f"r = {corr['pearson_r']:.2f}, rho = {corr['spearman_rho']:.2f}, tau = {corr['kendall_tau']:.2f}")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def methods_bar(df, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(df) + 1.2))
    colors = ["tab:red" if m == "merge_to_mix" else "tab:grey" if m.startswith("single:") else "tab:blue" for m in df["method"]]
    ax.barh(df["method"], df["accuracy"], color=colors)
    for y, v in enumerate(df["accuracy"]):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("target test accuracy")
    ax.set_xlim(0, min(1.0, df["accuracy"].max() * 1.15))
    _save(fig, path)


def accuracy_vs_size(masks, oracle, path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(masks["size"], masks["accuracy"], s=18, alpha=0.6, label="merged (val)")
    ax.plot(*zip(*masks.groupby("size")["accuracy"].mean().items()), c="tab:blue")
    if oracle is not None and len(oracle):
        ax.scatter(oracle["size"] + 0.1, oracle["val_accuracy"], s=18, alpha=0.6, c="tab:orange", label="fine-tuned (val)")
        ax.plot(*zip(*oracle.groupby("size")["val_accuracy"].mean().items()), c="tab:orange")
    ax.set_xlabel("datasets in the mixture")
    ax.set_ylabel("target val accuracy")
    ax.legend(fontsize=8)
    _save(fig, path)


def transfer_heatmap(masks, mixtures, candidates, path) -> None:
    """Each candidate alone -> target: merged-singleton val (= its fine-tune), fine-tune val and test."""
    import numpy as np

    cands = sorted(candidates)
    m = masks.set_index("mask")
    x = mixtures.set_index("mask")
    rows = {"fine-tune, target val": [x.loc[c, "val_accuracy"] for c in cands],
            "fine-tune, target test": [x.loc[c, "test_accuracy"] for c in cands],
            "merge rank (of all masks)": [m.loc[c, "rank"] for c in cands]}
    data = np.array([rows["fine-tune, target val"], rows["fine-tune, target test"]], dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(cands) + 2, 2.6))
    im = ax.imshow(data, cmap="RdYlGn", vmin=max(0.0, data.min() - 0.05), vmax=min(1.0, data.max() + 0.05), aspect="auto")
    for (i, j), v in np.ndenumerate(data):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cands)), [f"{c}\n(rank {r})" for c, r in zip(cands, rows["merge rank (of all masks)"])], fontsize=8)
    ax.set_yticks(range(2), ["target val", "target test"])
    ax.set_title("single-dataset transfer to the target (accuracy)")
    fig.colorbar(im, ax=ax)
    _save(fig, path)


def score_vs_weight(scored: dict, chosen: str, metric: str, path, top: int = 3) -> None:
    """scored: weights key -> val score (every vector the weight search scored); one panel per dataset
    of the chosen vector (its `top` largest weights): the score against that dataset's weight."""
    from .mixtures import parse_weights_key

    w = parse_weights_key(chosen)
    names = sorted(w, key=lambda n: -w[n])[:top]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, n in zip(axes[0], names):
        xs = [parse_weights_key(k).get(n, 0.0) for k in scored]
        ax.scatter(xs, list(scored.values()), s=22, alpha=0.7)
        ax.scatter([w[n]], [scored[chosen]], s=140, facecolors="none", edgecolors="red", linewidths=2,
                   label="chosen")
        ax.set_xlabel(f"weight of {n}")
        ax.set_ylabel(f"merged target val {metric}")
        ax.set_xlim(-0.03, 1.03)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle("Mixture weights: every vector the search scored")
    _save(fig, path)


def leave_one_out(long, per_target, path) -> None:
    """Merge to Mix's deployed model minus each baseline, per target (paired 95 % intervals): one
    panel per baseline, targets down the side, a trust verdict beside each target."""
    methods = [m for m in ("pretrained", "all_data", "similarity_topk", "similarity_threshold", "random")
               if m in set(long["method"])]
    targets = list(per_target["target"])
    fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods) + 1.2, 0.42 * len(targets) + 1.4),
                             sharey=True, squeeze=False)
    colors = {"win": "tab:green", "tie": "0.45", "loss": "tab:red"}
    for ax, method in zip(axes[0], methods):
        g = long[long["method"] == method].set_index("target")
        for i, t in enumerate(targets):
            if t in g.index and g.loc[t, "outcome"] is not None:
                r = g.loc[t]
                ax.plot([r["m2m_diff_lo"], r["m2m_diff_hi"]], [i, i], color=colors[r["outcome"]], lw=2)
                ax.plot([r["m2m_diff"]], [i], "o", color=colors[r["outcome"]], ms=4)
        ax.axvline(0, color="k", lw=0.7)
        ax.set_title(f"minus {method}", fontsize=9)
        ax.set_xlabel("test accuracy difference")
    labels = [f"{t} ({v if isinstance(v, str) else 'no trust.json'})" for t, v in zip(targets, per_target["trust"])]
    axes[0][0].set_yticks(range(len(targets)), labels, fontsize=8)
    axes[0][0].invert_yaxis()
    fig.suptitle("Merge to Mix (deployed) minus each baseline, per target (paired 95 % intervals)", fontsize=10)
    _save(fig, path)
