"""The teaching view of notebook 02: draw a dual-monitor replay and step through it epoch by epoch.

Takes the tables of :mod:`medtl_lib.teaching.walkthrough`. Figures are plain
:class:`matplotlib.figure.Figure` objects, never registered with pyplot: a notebook then shows one
exactly once (when returned or displayed), and the slider can redraw hundreds of times without
pyplot's "too many open figures" leak.

:func:`step_through` gives an ipywidgets slider in a live JupyterLab, and a static rendering (the
table and the figure) wherever no widget frontend can answer: under papermill / nbconvert /
nbclient, in plain Python, without ipywidgets, or when asked (``static=True`` or the environment
variable ``MEDTL_STATIC=1``).
"""
from __future__ import annotations

import io
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from medtl_lib.teaching.walkthrough import reading_differences
from medtl_lib.training.dual_monitor import PHASE_VAL_LOSS

DUAL_COLOR = "tab:blue"
BASE_COLOR = "tab:purple"
THETA_COLOR = "goldenrod"
STOP_COLOR = "tab:red"
PHASE_B_SHADE = "#e8f1fb"

# processes that run notebooks with no frontend to render widgets or answer a slider
_HEADLESS_PARENTS = ("papermill", "nbclient", "nbconvert", "jupyter-execute", "pytest")
_TRUE = {"1", "true", "yes", "on"}

STATE_COLUMNS = ["epoch", "train_acc", "val_loss", "phase", "c", "s", "lr", "lr_next",
                 "save_best", "theta_star_epoch", "stop", "why"]


# ----------------------------------------------------------------------------- figure

def _theta(df: pd.DataFrame) -> int | None:
    if df.empty:
        return None
    value = df["theta_star_epoch"].iloc[-1]
    return None if value is None or pd.isna(value) else int(value)


def _stop_epoch(df: pd.DataFrame) -> int | None:
    stops = df.loc[df["stop"].astype(bool), "epoch"]
    return int(stops.iloc[0]) if len(stops) else None


def _upto(df: pd.DataFrame | None, epoch: int | None) -> pd.DataFrame | None:
    if df is None or epoch is None:
        return df
    return df[df["epoch"] <= epoch]


def plot_replay(replay_df: pd.DataFrame, baseline_df: pd.DataFrame | None = None,
                upto: int | None = None, source: str | None = None) -> Figure:
    """Four aligned panels: train acc vs T, val loss with theta*, LR (log), and the counters.

    ``upto`` draws the state as it stood after that epoch (the slider uses it); the axes keep the
    full run's limits so nothing jumps while stepping. With ``baseline_df`` the ReduceLROnPlateau
    replay is drawn beside the dual monitor (purple, dashed) in the same panels. ``source`` says
    where the curve came from (simulated or which run) in the title, so a saved figure says it too.
    """
    if replay_df.empty:
        raise ValueError("replay_df is empty")
    full, full_base = replay_df, baseline_df
    rep, base = _upto(replay_df, upto), _upto(baseline_df, upto)
    attrs = replay_df.attrs
    last_epoch = int(max(full["epoch"].max(),
                         full_base["epoch"].max() if full_base is not None else 0))

    fig = Figure(figsize=(9.5, 10), layout="constrained")
    ax_acc, ax_loss, ax_lr, ax_cnt = fig.subplots(4, 1, sharex=True)
    axes = (ax_acc, ax_loss, ax_lr, ax_cnt)
    title = "Dual monitor (Algorithm 1)"
    title += " vs ReduceLROnPlateau" if baseline_df is not None else " replay"
    if upto is not None:
        title += f" - state after epoch {min(int(upto), last_epoch)}"
    if source:
        title += f"\n{source}"
    fig.suptitle(title)

    for epoch in rep.loc[rep["phase"] == PHASE_VAL_LOSS, "epoch"]:
        for ax in axes:
            ax.axvspan(epoch - 0.5, epoch + 0.5, color=PHASE_B_SHADE, lw=0, zorder=0)
    phase_patch = Line2D([], [], color=PHASE_B_SHADE, lw=8, label="phase B (val loss watched)")

    # training accuracy and the threshold T
    ax_acc.plot(rep["epoch"], rep["train_acc"], "-o", color=DUAL_COLOR, ms=4, label="train acc")
    imp = rep[rep["improved"].astype(bool) & (rep["phase"] != PHASE_VAL_LOSS)]
    ax_acc.plot(imp["epoch"], imp["train_acc"], "o", mfc="none", mec="black", ms=8,
                label="phase A: new best train acc (c=0)")
    if "threshold" in attrs:
        ax_acc.axhline(attrs["threshold"], color="black", ls="--", lw=1,
                       label=f"T = {attrs['threshold']:g}")
    lo = min(full["train_acc"].min(), attrs.get("threshold", 1.0))
    ax_acc.set_ylim(max(0.0, lo - 0.05), min(1.0, max(full["train_acc"].max(),
                                                      attrs.get("threshold", 0)) + 0.03))
    ax_acc.set_ylabel("train acc")
    ax_acc.legend(handles=[*ax_acc.get_legend_handles_labels()[0], phase_patch], fontsize=8,
                  loc="lower right")

    # validation loss, every save and the theta* in force
    if base is not None:
        ax_loss.plot(base["epoch"], base["val_loss"], ":", color="grey", lw=1)
    ax_loss.plot(rep["epoch"], rep["val_loss"], "-o", color=DUAL_COLOR, ms=4, label="val loss")
    saved = rep[rep["save_best"].astype(bool)]
    ax_loss.plot(saved["epoch"], saved["val_loss"], "s", mfc="none", mec=DUAL_COLOR, ms=9,
                 label="dual: theta* saved")
    theta = _theta(rep)
    if theta is not None:
        y = float(rep.loc[rep["epoch"] == theta, "val_loss"].iloc[0])
        ax_loss.plot([theta], [y], "*", color=THETA_COLOR, mec="black", ms=16, zorder=5,
                     label=f"dual theta* = epoch {theta}")
    if base is not None:
        btheta = _theta(base)
        if btheta is not None:
            y = float(base.loc[base["epoch"] == btheta, "val_loss"].iloc[0])
            ax_loss.plot([btheta], [y], "D", color=BASE_COLOR, mec="white", ms=7, zorder=6,
                         label=f"plateau best = epoch {btheta}")
    losses = list(full["val_loss"])
    if full_base is not None:
        losses += list(full_base["val_loss"])
    values = [v for v in losses if math.isfinite(v)]
    if values:
        span = max(values) - min(values) or 0.1
        ax_loss.set_ylim(min(values) - 0.08 * span, max(values) + 0.08 * span)
    ax_loss.set_ylabel("val loss")
    ax_loss.legend(fontsize=8, loc="upper right")

    # learning rate, log scale
    ax_lr.step(rep["epoch"], rep["lr"], where="mid", color=DUAL_COLOR, lw=2, label="dual monitor")
    cuts = rep[rep["lr_factor"] != 1.0]
    ax_lr.plot(cuts["epoch"], cuts["lr"], "v", color=DUAL_COLOR, ms=8, label="dual: cut after")
    if base is not None:
        ax_lr.step(base["epoch"], base["lr"], where="mid", color=BASE_COLOR, ls="--", lw=2,
                   label="ReduceLROnPlateau")
        bcuts = base[base["lr_factor"] != 1.0]
        ax_lr.plot(bcuts["epoch"], bcuts["lr"], "v", mfc="none", mec=BASE_COLOR, ms=8,
                   label="plateau: cut after")
    ax_lr.set_yscale("log")
    lrs = list(full["lr"]) + list(full["lr_next"])
    if full_base is not None:
        lrs += list(full_base["lr"]) + list(full_base["lr_next"])
    lrs = [v for v in lrs if v > 0]
    if lrs:
        ax_lr.set_ylim(min(lrs) / 1.6, max(lrs) * 1.6)
    ax_lr.set_ylabel("learning rate")
    ax_lr.legend(fontsize=8, loc="lower left")

    # counters c and s against p and P
    ax_cnt.step(rep["epoch"], rep["c"], where="mid", color=DUAL_COLOR, label="c (after epoch)")
    ax_cnt.step(rep["epoch"], rep["s"], where="mid", color="black", lw=2, label="s (cuts)")
    if "patience" in attrs:
        ax_cnt.axhline(attrs["patience"], color=DUAL_COLOR, ls=":", lw=1,
                       label=f"p = {attrs['patience']}")
    if "stop_patience" in attrs:
        ax_cnt.axhline(attrs["stop_patience"], color="black", ls=":", lw=1,
                       label=f"P = {attrs['stop_patience']}")
    if base is not None:
        ax_cnt.step(base["epoch"], base["s"], where="mid", color=BASE_COLOR, ls="--",
                    label="plateau cuts")
    top = max(int(full["s"].max()), int(full["c"].max()), int(attrs.get("stop_patience", 0)),
              int(attrs.get("patience", 0)))
    ax_cnt.set_ylim(-0.3, top + 0.7)
    ax_cnt.set_ylabel("count")
    ax_cnt.set_xlabel("epoch")
    ax_cnt.legend(fontsize=8, loc="upper left", ncol=2)

    # theta* and stop across all panels
    stop = _stop_epoch(rep)
    bstop = _stop_epoch(base) if base is not None else None
    for ax in axes:
        if theta is not None:
            ax.axvline(theta, color=THETA_COLOR, lw=1.5, alpha=0.9)
        if stop is not None:
            ax.axvline(stop, color=STOP_COLOR, lw=1.5)
        if bstop is not None:
            ax.axvline(bstop, color=BASE_COLOR, lw=1, ls="--", alpha=0.7)
        ax.grid(alpha=0.3)
    for epoch, text, color, dy in ((stop, "dual stop", STOP_COLOR, -12),
                                   (bstop, "plateau stop", BASE_COLOR, -24)):
        if epoch is None:
            continue
        at_edge = epoch >= last_epoch - 1  # label to the left there, or it leaves the figure
        ax_acc.annotate(text, (epoch, 1), xycoords=("data", "axes fraction"),
                        xytext=(-3 if at_edge else 3, dy), textcoords="offset points",
                        ha="right" if at_edge else "left", color=color, fontsize=8)
    ax_cnt.set_xlim(0.5, last_epoch + 0.5)
    ax_cnt.xaxis.get_major_locator().set_params(integer=True)
    return fig


def plot_readings(pairs: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
                  titles: dict[str, str] | None = None) -> Figure:
    """One column per open reading: the kit's replay against the other reading's, same curve.

    Top: validation loss with each replay's theta* and stop (phase-B epochs of the kit's replay
    shaded, epochs whose decisions differ marked red). Bottom: both LR traces (log scale). Why a
    figure per reading and not one for all: each reading is replayed alone, often on its own curve
    (the one where it matters), so every difference has exactly one cause.
    """
    if not pairs:
        raise ValueError("pairs is empty")
    titles = titles or {}
    fig = Figure(figsize=(4.2 * len(pairs), 6), layout="constrained")
    axes = fig.subplots(2, len(pairs), sharex="col", squeeze=False)
    for j, (name, (kit, other)) in enumerate(pairs.items()):
        ax_loss, ax_lr = axes[0][j], axes[1][j]
        differ = set(int(e) for e in reading_differences(kit, other)["epoch"])
        for epoch in kit.loc[kit["phase"] == PHASE_VAL_LOSS, "epoch"]:
            for ax in (ax_loss, ax_lr):
                ax.axvspan(epoch - 0.5, epoch + 0.5, color=PHASE_B_SHADE, lw=0, zorder=0)
        longer = kit if len(kit) >= len(other) else other
        ax_loss.plot(longer["epoch"], longer["val_loss"], "-o", color="grey", ms=3, lw=1,
                     label="val loss")
        for epoch in sorted(differ):
            ax_loss.axvline(epoch, color=STOP_COLOR, alpha=0.15, lw=6, zorder=0)
        for df, label, color, marker, ls in ((kit, "kit", DUAL_COLOR, "*", "-"),
                                              (other, "other reading", "tab:orange", "D", "--")):
            theta = _theta(df)
            if theta is not None:
                y = float(df.loc[df["epoch"] == theta, "val_loss"].iloc[0])
                ax_loss.plot([theta], [y], marker, color=color, mec="black",
                             ms=14 if marker == "*" else 8, zorder=5,
                             label=f"{label}: theta* = {theta}")
            stop = _stop_epoch(df)
            if stop is not None:
                for ax in (ax_loss, ax_lr):
                    ax.axvline(stop, color=color, ls=ls, lw=1.5)
            ax_lr.step(df["epoch"], df["lr"], where="mid", color=color, ls=ls, lw=2,
                       label=f"{label}" + (f" (stop {stop})" if stop else " (no stop)"))
        ax_loss.set_title(titles.get(name, name), fontsize=10)
        ax_loss.legend(fontsize=7, loc="upper right")
        ax_loss.grid(alpha=0.3)
        ax_lr.set_yscale("log")
        lrs = [v for v in [*kit["lr"], *other["lr"]] if v > 0]
        if lrs:  # the same padding as plot_replay: a factor-2 range gets readable ticks
            ax_lr.set_ylim(min(lrs) / 1.6, max(lrs) * 1.6)
        ax_lr.set_xlabel("epoch")
        ax_lr.legend(fontsize=7, loc="lower left")
        ax_lr.grid(alpha=0.3)
        ax_lr.xaxis.get_major_locator().set_params(integer=True)
        if j == 0:
            ax_loss.set_ylabel("val loss\n(red: decisions differ)")
            ax_lr.set_ylabel("learning rate")
    fig.suptitle("The open readings, each replayed alone against the kit's")
    return fig


# ----------------------------------------------------------------------------- frontend detection

def _parent_cmdline() -> list[str]:
    """argv of the process that launched this kernel ([] when it cannot be read)."""
    pid = os.getppid()
    try:
        import psutil  # a jupyter dependency; optional here

        return list(psutil.Process(pid).cmdline())
    except Exception:
        pass
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part for part in raw.decode(errors="replace").split("\0") if part]
    except OSError:
        return []


def headless_reason(static: bool | None = None) -> str | None:
    """Why a slider could not work here, or None when a live widget frontend is likely.

    No frontend means a slider would render as nothing (papermill records widget output in
    widget state, not in the cell), so the caller falls back to a static table and figure.
    """
    if static:
        return "static=True"
    if os.environ.get("MEDTL_STATIC", "").strip().lower() in _TRUE:
        return "MEDTL_STATIC is set"
    try:
        import ipywidgets  # noqa: F401
    except Exception:
        return "ipywidgets is not installed"
    try:
        from IPython import get_ipython
    except Exception:
        return "IPython is not installed"
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return "not running in a Jupyter kernel"
    # papermill, nbclient, nbconvert --execute, jupyter execute start the kernel themselves; a
    # JupyterLab/Notebook server or VS Code does not look like any of them. Only the first argv
    # entries are looked at, so a notebook *named* like a tool does not count.
    argv = _parent_cmdline()[:3]
    for part in argv:
        name = Path(part).name.lower()
        for marker in _HEADLESS_PARENTS:
            if marker in name:
                return f"kernel started by {marker} (no widget frontend)"
    # nbclient (under papermill, nbconvert, jupyter execute, or any script calling them) sends
    # its requests with allow_stdin=False; JupyterLab, Notebook, VS Code and Colab allow input.
    if getattr(shell.kernel, "_allow_stdin", True) is False:
        return "the frontend accepts no input (a headless executor such as nbclient)"
    return None


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except Exception:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _display(obj: Any) -> None:
    try:
        from IPython.display import display
    except Exception:
        print(obj)
        return
    display(obj)


def _show_figure(fig: Figure) -> None:
    """PNG via IPython.display: works whatever matplotlib backend the kernel has (or none)."""
    if not _in_kernel():
        return
    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _display(Image(data=buf.getvalue(), format="png"))


# ----------------------------------------------------------------------------- tables

NEVER_USED = "never used (stopped)"


def state_table(replay_df: pd.DataFrame, upto: int | None = None) -> pd.DataFrame:
    """The columns a student needs to follow the decisions (phase, c, s, LR, theta*).

    ``lr_next`` of the epoch that stops is blanked (NaN, shown as "never used (stopped)"): no epoch
    runs at it, and a number there reads as if training went on at that LR.
    """
    df = _upto(replay_df, upto)
    table = df[[c for c in STATE_COLUMNS if c in df.columns]].reset_index(drop=True)
    if "lr_next" in table and "stop" in table:
        table["lr_next"] = table["lr_next"].astype(float).where(~table["stop"].astype(bool))
    return table


def full_table(table: pd.DataFrame) -> Any:
    """A table for display with every ``why`` sentence in full (pandas cuts text cells at 50
    characters, which cut the reasons in half); rows styled as in the step-through view."""
    return _styled(table)


def _compare_row(rep: pd.DataFrame, base: pd.DataFrame | None) -> pd.DataFrame:
    rows = {}
    for name, df in (("dual monitor", rep), ("ReduceLROnPlateau", base)):
        if df is None or df.empty:
            continue
        last = df.iloc[-1]
        stop = bool(last["stop"])
        rows[name] = {
            "epoch": int(last["epoch"]), "phase": last.get("phase", "val_loss (always)"),
            "c": int(last["c"]), "s": int(last["s"]), "LR used": f"{float(last['lr']):.3g}",
            "LR next": NEVER_USED if stop else f"{float(last['lr_next']):.3g}",
            "theta*": _theta(df), "stop": stop,
        }
    return pd.DataFrame(rows).T.rename_axis("schedule").reset_index()


def _styled(table: pd.DataFrame) -> Any:
    """Highlight theta* saves, phase B and the stop row; plain frame if styling is unavailable."""
    try:
        def row_style(row: pd.Series) -> list[str]:
            css = ""
            if row.get("phase") == PHASE_VAL_LOSS:
                css = f"background-color: {PHASE_B_SHADE};"
            if bool(row.get("save_best", False)):
                css += "font-weight: bold;"
            if bool(row.get("stop", False)):
                css += "color: #b00020;"
            return [css] * len(row)

        styler = table.style.apply(row_style, axis=1)
        formats = {"lr": "{:.3g}", "train_acc": "{:.4f}", "val_loss": "{:.4f}"}
        styler = styler.format({k: v for k, v in formats.items() if k in table}, na_rep="-")
        if "lr_next" in table:
            styler = styler.format(
                lambda v: NEVER_USED if pd.isna(v) else f"{float(v):.3g}", subset=["lr_next"])
        text = [c for c in table.columns if c == "why" or str(c).startswith("why")
                or c == "differs"]
        if text:  # the sentences hold "<" and ">": escape them, show them whole
            styler = styler.format(escape="html", subset=text)
        styler = styler.set_properties(subset=text, **{"text-align": "left",
                                                       "white-space": "normal",
                                                       "min-width": "28em"})
        styler.to_html()  # fail here (e.g. no jinja2) rather than at display time
        return styler
    except Exception:
        return table


def _render_table(table: pd.DataFrame) -> None:
    if _in_kernel():
        _display(_styled(table))
    else:
        with pd.option_context("display.width", 250, "display.max_colwidth", None,
                               "display.max_rows", 500, "display.max_columns", 50):
            shown = table.copy()
            if "lr_next" in shown:
                shown["lr_next"] = [NEVER_USED if pd.isna(v) else f"{float(v):.3g}"
                                    for v in shown["lr_next"]]
            print(shown.to_string(index=False, na_rep="-"))


# ----------------------------------------------------------------------------- step through

@dataclass
class StepView:
    """What :func:`step_through` rendered; already displayed, returned for inspection and tests."""

    mode: str  # "widget" or "static"
    reason: str | None  # why static was chosen (None in widget mode)
    table: pd.DataFrame
    figure: Figure | None = None
    widget: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"<step_through: {self.mode}{why}, {len(self.table)} epochs>"


def _render_state(rep: pd.DataFrame, base: pd.DataFrame | None, epoch: int,
                  source: str | None = None) -> Figure:
    row = rep[rep["epoch"] == epoch]
    fig = plot_replay(rep, base, upto=epoch, source=source)
    _show_figure(fig)
    if len(row):
        print(f"epoch {epoch}, dual monitor: {row['why'].iloc[0]}")
    if base is not None:
        brow = base[base["epoch"] == epoch]
        if len(brow):
            why = str(brow["why"].iloc[0]).removeprefix("plateau: ")
            print(f"epoch {epoch}, ReduceLROnPlateau: {why}")
        elif len(base) and epoch > int(base["epoch"].max()):
            print(f"(ReduceLROnPlateau stopped after epoch {int(base['epoch'].max())})")
    if not len(row):
        print(f"(the dual monitor stopped after epoch {int(rep['epoch'].max())})")
    _render_table(_compare_row(_upto(rep, epoch), _upto(base, epoch)))
    return fig


def step_through(replay_df: pd.DataFrame, baseline_df: pd.DataFrame | None = None,
                 static: bool | None = None, source: str | None = None) -> StepView:
    """Slider over the epochs in a live notebook; full table + figure when headless.

    With ``baseline_df`` every state shows the ReduceLROnPlateau replay beside the dual monitor:
    its LR trace and cuts in the figure, its decision sentence under the dual monitor's, and both
    in the side-by-side row. Never raises for lack of a frontend: any failure to build the widget
    falls back to static.
    """
    if replay_df.empty:
        raise ValueError("replay_df is empty")
    reason = headless_reason(static)
    table = state_table(replay_df)
    if reason is None:
        try:
            return _widget_view(replay_df, baseline_df, table, source)
        except Exception as exc:  # a broken widget stack must not break the lesson
            reason = f"widget failed: {type(exc).__name__}: {exc}"
    print(f"Static view ({reason}). In JupyterLab, step_through(..., static=False) "
          "gives an epoch slider.")
    _render_table(table)
    if baseline_df is not None:
        print("ReduceLROnPlateau + early stopping on the same validation losses:")
        _render_table(state_table(baseline_df))
    fig = plot_replay(replay_df, baseline_df, source=source)
    _show_figure(fig)
    sys.stdout.flush()
    return StepView("static", reason, table, fig)


def _widget_view(rep: pd.DataFrame, base: pd.DataFrame | None, table: pd.DataFrame,
                 source: str | None = None) -> StepView:
    import ipywidgets as W
    from IPython.display import display

    first, last = int(rep["epoch"].min()), int(rep["epoch"].max())
    if base is not None:
        last = max(last, int(base["epoch"].max()))
    slider = W.IntSlider(value=first, min=first, max=last, step=1, description="epoch",
                         continuous_update=False, layout=W.Layout(width="420px"))
    play = W.Play(value=first, min=first, max=last, step=1, interval=1500, description="play")
    W.jslink((play, "value"), (slider, "value"))
    out = W.Output()

    def redraw(change: dict | None = None) -> None:
        with out:
            out.clear_output(wait=True)
            _render_state(rep, base, int(slider.value), source)

    slider.observe(redraw, names="value")
    box = W.VBox([W.HBox([play, slider]), out])
    display(box)
    redraw()
    return StepView("widget", None, table, None, box)
