# Plots forkmem summaries: private dirty memory per worker by mode, and total PSS against N workers.
# Run with Debian's /usr/bin/python3 (python3-matplotlib); pyenv interpreters have no matplotlib.
"""Usage: /usr/bin/python3 bench/plot.py RESULTS/<workload>[-scaling]-summary.json [...]
Writes <same name>-private.png (and -scaling.png for scaling summaries) next to each summary."""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _title(s):
    py = s["python"]
    return "%s — %s %s, kernel %s" % (s["workload"], py.get("impl", "cpython"), py["version"], s["kernel"])


def plot_private(s, out):
    groups = [g for g in s["groups"] if g["status"] == "ok"]
    ns = sorted({g["workers"] for g in groups})
    n = 4 if 4 in ns else ns[-1]
    modes = [m for m in s["modes"] if any(g["mode"] == m and g["workers"] == n for g in groups)]
    bad = [g for g in s["groups"] if g["status"] != "ok" and g["workers"] == n]
    if not modes:
        return None
    cps = sorted({int(a) for g in groups if g["workers"] == n for a in g["checkpoints"]})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(modes) + 2), 4.2))
    width = 0.8 / len(cps)
    for j, cp in enumerate(cps):
        xs, ys, lo, hi = [], [], [], []
        for i, m in enumerate(modes):
            g = next(g for g in groups if g["mode"] == m and g["workers"] == n)
            a = g["checkpoints"].get(str(cp)) or g["checkpoints"].get(cp)
            if not a:
                continue
            # shmem pages of the eternal memfd mapped by one worker only show as Private_Dirty
            # without being copies: plot the figure without them (identical in other modes)
            v = a.get("worker_private_dirty_noshmem_mb") or a["worker_private_dirty_mb"]
            xs.append(i + (j - (len(cps) - 1) / 2) * width)
            ys.append(v["median"])
            lo.append(v["median"] - v["min"])
            hi.append(v["max"] - v["median"])
        label = "before load" if cp == 0 else "after %d %s" % (cp, "tasks" if s["workload"] == "pool" else "requests")
        bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=label)
        for b, y in zip(bars, ys):
            ax.annotate("%.1f" % y, (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(modes)))
    ax.set_xticklabels(modes)
    ax.set_ylabel("Private_Dirty per worker (MB)\n(eternal memfd pages excluded)", fontsize=9)
    sub = "%d workers, median of %d repeats (bars: min–max)" % (n, s["repeats"])
    if bad:
        sub += "\nnot run: " + "; ".join("%s (%s)" % (g["mode"], g["status"][:60]) for g in bad)
    ax.set_title(_title(s) + "\n" + sub, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_scaling(s, out):
    fits = s.get("fits") or {}
    if not fits:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, f in sorted(fits.items()):
        mode = key.split("/", 1)[1]
        ns = [p[0] for p in f["points"]]
        line, = axes[0].plot(ns, [p[1] for p in f["points"]], "o", label="%s: b = %.1f MB/worker" % (mode, f["b_mb"]))
        axes[0].plot(ns, [f["a_mb"] + f["b_mb"] * x for x in ns], "-", color=line.get_color(), alpha=0.6)
        axes[1].plot(ns, [p[2] for p in f["points"]], "o-", color=line.get_color(), label=mode)
    axes[0].set_xlabel("workers N")
    axes[0].set_ylabel("total PSS, master + workers (MB)")
    axes[0].set_title("memory(N) = a + b·N (least squares)", fontsize=9)
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("workers N")
    axes[1].set_ylabel("Private_Dirty per worker (MB)")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({p[0] for f in fits.values() for p in f["points"]}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    fig.suptitle(_title(s) + ", after the last checkpoint", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(paths):
    for p in paths:
        with open(p) as f:
            s = json.load(f)
        base = p[: -len("-summary.json")] if p.endswith("-summary.json") else os.path.splitext(p)[0]
        made = [plot_private(s, base + "-private.png")]
        if len(s.get("workers", [])) > 1:
            made.append(plot_scaling(s, base + "-scaling.png"))
        print("wrote " + ", ".join(m for m in made if m))


if __name__ == "__main__":
    main(sys.argv[1:])
