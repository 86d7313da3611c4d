"""Pictures of a trace (matplotlib, an optional extra: every function returns False
without it): gate heatmaps over time, the saturation scatter, gradient norm against time,
and text coloured by one unit's state."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mxlstm.inspect.gates import GATES, PART_NAMES, PARTS
from mxlstm.training.log import _import_pyplot as import_pyplot  # the one Agg set-up

_SHOWN = {"\n": "\u23ce", " ": "\u2423", "\t": "\u21e5"}
_GATE_COLOURS = {"i": "tab:blue", "f": "tab:green", "o": "tab:red", "r": "tab:purple",
                 "z": "tab:orange"}


def show_token(token: str) -> str:
    """A token as a readable tick label (newline, space and tab made visible)."""
    return "".join(_SHOWN.get(ch, ch) for ch in token)[:12]


def plot_heatmaps(parts: dict[str, np.ndarray], cell_type: str, length: int,
                  units: list[int], labels: list[str] | None, title: str,
                  path: str | Path) -> bool:
    """One heatmap per gate / candidate / state of one example: ``parts[name] (T, H)``,
    units on the vertical axis, the first ``length`` steps on the horizontal axis
    (labelled by ``labels``, tokens or characters, when given)."""
    plt = import_pyplot()
    if plt is None:
        return False
    names = PARTS[cell_type]
    width = min(max(6.0, 0.09 * length + 2), 30.0)
    fig, axes = plt.subplots(len(names), 1, figsize=(width, 0.9 + len(names) *
                                                      max(1.2, 0.13 * len(units))),
                             squeeze=False, sharex=True)
    try:
        for ax, name in zip(axes[:, 0], names):
            value = parts[name][:length, units].T
            gate = name in GATES[cell_type]
            scale = np.abs(value).max() or 1.0
            image = ax.imshow(value, aspect="auto", interpolation="nearest",
                              cmap="viridis" if gate else "RdBu_r",
                              vmin=0 if gate else -scale, vmax=1 if gate else scale)
            ax.set_ylabel(f"{name}\n{PART_NAMES[name]}", fontsize=8)
            ax.set_yticks(range(len(units)))
            ax.set_yticklabels([str(u) for u in units], fontsize=5 if len(units) > 16 else 7)
            fig.colorbar(image, ax=ax, pad=0.01, fraction=0.02)
        bottom = axes[-1, 0]
        if labels is not None:
            bottom.set_xticks(range(length))
            bottom.set_xticklabels([show_token(t) for t in labels[:length]],
                                   fontsize=6 if length <= 120 else 4,
                                   rotation=0 if max(len(t) for t in labels) <= 1 else 90)
        bottom.set_xlabel("time step" if labels is None else "input at each step")
        axes[0, 0].set_title(title, fontsize=9)
        _save(plt, fig, path)
    finally:
        plt.close(fig)
    return True


def plot_saturation(sat: dict[str, dict[str, np.ndarray]], title: str,
                    path: str | Path) -> bool:
    """Karpathy et al.'s scatter: per unit, fraction of steps left-saturated (< 0.1) on
    the horizontal axis against right-saturated (> 0.9), one colour per gate."""
    plt = import_pyplot()
    if plt is None or not sat:
        return False
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    try:
        for gate, fr in sat.items():
            ax.scatter(fr["left"], fr["right"], s=9, alpha=0.6, label=PART_NAMES[gate],
                       color=_GATE_COLOURS.get(gate))
        ax.plot([0, 1], [1, 0], color="0.7", lw=0.8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("fraction of steps < 0.1 (left-saturated)")
        ax.set_ylabel("fraction of steps > 0.9 (right-saturated)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        _save(plt, fig, path)
    finally:
        plt.close(fig)
    return True


def plot_gradient_flow(curves: dict[str, np.ndarray], title: str, path: str | Path) -> bool:
    """``|d loss / d h_t|`` (and ``d x_t``) against ``t`` on a log scale, one line each."""
    plt = import_pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    try:
        for name, norms in curves.items():
            shown = np.where(norms > 0, norms, np.nan)
            ax.semilogy(np.arange(len(norms)), shown, label=name, lw=1.2)
        ax.set_xlabel("time step t")
        ax.set_ylabel("norm of d loss / d (state at t)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        _save(plt, fig, path)
    finally:
        plt.close(fig)
    return True


def plot_unit_text(text: str, values: np.ndarray, title: str, path: str | Path,
                   columns: int = 80) -> bool:
    """``text`` laid out as written (newlines kept), each character on a background
    coloured by ``values`` (one per character; red = the window's highest, blue = its
    lowest)."""
    plt = import_pyplot()
    if plt is None:
        return False
    from matplotlib import cm

    low, high = float(np.min(values)), float(np.max(values))
    span = (high - low) or 1.0
    rows, col, row = [], 0, 0
    for ch, v in zip(text, values):
        rows.append((row, col, ch, v))
        col += 1
        if ch == "\n" or col >= columns:
            row, col = row + 1, 0
    fig, ax = plt.subplots(figsize=(columns * 0.11, (row + 1) * 0.22 + 0.5))
    try:
        cmap = cm.get_cmap("RdBu_r")
        for r, c, ch, v in rows:
            ax.add_patch(plt.Rectangle((c, -r - 1), 1, 1, color=cmap((v - low) / span),
                                       lw=0))
            ax.text(c + 0.5, -r - 0.5, _SHOWN.get(ch, ch) if ch == "\n" else ch,
                    ha="center", va="center", fontsize=7, family="monospace")
        ax.set_xlim(0, columns)
        ax.set_ylim(-row - 1, 0)
        ax.axis("off")
        ax.set_title(title, fontsize=9, loc="left")
        _save(plt, fig, path)
    finally:
        plt.close(fig)
    return True


def _save(plt, fig, path: str | Path) -> None:
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
