"""`lakecdp report`: one self-contained HTML page of the lake's health, plots inline as SVG (see plots.py for why).

Each section reads what exists; a section whose data is not there yet says which command makes
it. The page holds counts, rates and model metrics only: never a customer id, address or name,
and reasons without the values they quoted (lakeview.reason_label).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from lakecdp.clock import Clock
from lakecdp.observe.lakeview import LakeView, reason_label
from lakecdp.observe.plots import ACCENT, FAIL, MUTED, PASS, new_figure, new_panels, time_axis, to_svg
from lakecdp.observe.status import FAILED, SENT, batch_durations, effective_export_log, p95

# Every plot the page can hold, by its data-plot id, in page order.
PLOTS = (
    "stream-lag",
    "stream-latency",
    "events-by-day",
    "events-by-name",
    "quarantine-by-reason",
    "segment-sizes",
    "segment-churn",
    "segment-overlap",
    "model-roc",
    "model-calibration",
    "model-lift",
    "model-clusters",
    "model-drift",
    "export-outcomes",
    "export-reasons",
    "export-rate",
    "quality-history",
    "experiment-lift",
)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    body: str


def render_report(view: LakeView, clock: Clock, allowed_rates: Mapping[str, float | None]) -> str:
    """The whole page. `allowed_rates`: each ESP destination's strictest documented requests per second (None: no limit)."""
    now = clock.now()
    sections = [
        tables_section(view),
        stream_section(view, now),
        events_section(view),
        segments_section(view),
        models_section(view),
        exports_section(view, allowed_rates),
        quality_section(view),
        experiments_section(view),
    ]
    nav = " · ".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections)
    title = "lakecdp report"
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head><body>"
        f"<h1>{title}</h1><p class='meta'>lake {html.escape(view.root)} · generated {now.strftime('%Y-%m-%d %H:%M:%S UTC')}</p>"
        f"<nav>{nav}</nav>{body}</body></html>"
    )


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:1.5em auto;color:#222;padding:0 1em}"
    "h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}.meta{color:#666}"
    "figure.plot{display:inline-block;margin:.4em;vertical-align:top}figure.plot svg{max-width:100%;height:auto}"
    "figcaption{font-size:12px;color:#555;max-width:640px}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}"
    "td.num{text-align:right}.no-data{color:#8a6d3b;background:#fcf8e3;padding:.4em .8em;display:inline-block}"
    ".ok{color:#2a7d2a}.bad{color:#b02a2a;font-weight:bold}"
)


# ---- page parts ----------------------------------------------------------------------------------
def plot(plot_id: str, figure, caption: str) -> str:
    return f'<figure class="plot" id="plot-{plot_id}" data-plot="{plot_id}">{to_svg(figure, plot_id)}<figcaption>{html.escape(caption)}</figcaption></figure>'


def no_data(what: str, command: str) -> str:
    return f'<p class="no-data" data-missing="{html.escape(what)}">no data yet: run <code>{html.escape(command)}</code></p>'


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (int, np.integer)):
        return f"<td class='num'>{value:,}</td>"
    if isinstance(value, float):
        return f"<td class='num'>{value:.4g}</td>"
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def _utc(values: pd.Series) -> np.ndarray:
    """Timestamps as naive UTC datetime64 (what matplotlib's date axis takes)."""
    return pd.to_datetime(values, utc=True).dt.tz_convert(None).to_numpy()


# ---- sections ------------------------------------------------------------------------------------
def tables_section(view: LakeView) -> Section:
    stats = view.all_table_stats()
    if not stats:
        return Section("tables", "Tables", no_data("tables", "lakecdp demo"))
    rows = [
        {
            "table": s.name,
            "rows": s.rows,
            "files": s.files,
            "version": s.version,
            "last write (UTC)": s.last_write.strftime("%Y-%m-%d %H:%M:%S") if s.last_write else None,
            "operation": s.last_operation,
        }
        for s in stats
    ]
    return Section("tables", "Tables", "<p>Rows and last commit from each table's Delta log.</p>" + table(rows))


def stream_section(view: LakeView, now: datetime) -> Section:
    metrics = view.read("stream_metrics", ["stream", "batch_id", "ended_at", "duration_s", "lag_s", "events", "quarantined"])
    if metrics is None or metrics.num_rows == 0:
        return Section("stream", "Stream lag and batch latency", no_data("stream_metrics", "lakecdp stream run"))
    frame = metrics.to_pandas().sort_values("ended_at")
    ended = _utc(frame["ended_at"])
    figure, axes = new_figure("Stream lag (oldest event of each batch)", "batch ended (UTC)", "lag (s)")
    axes.plot(ended, frame["lag_s"], marker=".", linewidth=1, color=ACCENT)
    time_axis(figure, axes)
    lag = plot("stream-lag", figure, "Seconds from the oldest event's receipt to the end of its micro-batch.")
    figure, axes = new_figure("Micro-batch duration", "batch ended (UTC)", "duration (s)")
    axes.plot(ended, frame["duration_s"], marker=".", linewidth=1, color=MUTED, label="batch")
    rolling = frame.set_index(pd.DatetimeIndex(ended))["duration_s"].rolling("1h").quantile(0.95)
    axes.plot(ended, rolling.to_numpy(), color=FAIL, label="p95, trailing hour")
    axes.legend(fontsize=7)
    time_axis(figure, axes)
    latency = plot("stream-latency", figure, "Each micro-batch's duration and the p95 of the hour before it.")
    recent = batch_durations(metrics, now - pd.Timedelta(hours=1), now)
    summary = table(
        [
            {
                "batches": len(frame),
                "events": int(frame["events"].sum()),
                "quarantined": int(frame["quarantined"].sum()),
                "last batch": str(frame["ended_at"].iloc[-1])[:19],
                "p95 duration last hour (s)": p95(recent),
            }
        ]
    )
    return Section("stream", "Stream lag and batch latency", summary + lag + latency)


def events_section(view: LakeView) -> Section:
    events = view.read("events", ["type", "event", "event_date"])
    quarantine = view.read("quarantine", ["reason"])
    parts = []
    if events is None or events.num_rows == 0:
        parts.append(no_data("events", "lakecdp demo (or lakecdp stream run)"))
    else:
        frame = events.to_pandas()
        names = frame["event"].fillna(frame["type"])  # page and identify calls have no event name
        per_day = frame.groupby("event_date").size().sort_index()
        figure, axes = new_figure("Events per day", "event date", "events")
        axes.bar(pd.to_datetime(per_day.index).to_numpy(), per_day.to_numpy(), color=ACCENT)
        time_axis(figure, axes, min_margin_days=1)
        parts.append(plot("events-by-day", figure, "Valid events in bronze by event date."))
        by_name = names.value_counts().head(15).sort_values()
        figure, axes = new_figure("Events by name (top 15)", "events", "", height=0.22 * len(by_name) + 1.2)
        axes.barh(by_name.index.astype(str), by_name.to_numpy(), color=ACCENT)
        parts.append(plot("events-by-name", figure, "Bronze events by Segment event name (page/identify calls by type)."))
    if quarantine is None or quarantine.num_rows == 0:
        parts.append(no_data("quarantine", "lakecdp stream run (nothing quarantined yet)"))
    else:
        reasons = pd.Series(quarantine.column("reason").to_pylist()).map(reason_label).value_counts().head(15).sort_values()
        figure, axes = new_figure("Quarantined lines by reason", "lines", "", width=7.5, height=0.25 * len(reasons) + 1.2)
        axes.barh([r[:60] for r in reasons.index], reasons.to_numpy(), color=FAIL)
        axes.tick_params(axis="y", labelsize=7)
        parts.append(plot("quarantine-by-reason", figure, "Lines that failed validation, by reason (quoted values left out)."))
    return Section("events", "Events and quarantine", "".join(parts))


def daily_segment_sizes(transitions: pd.DataFrame) -> pd.DataFrame:
    """Per segment and day: entered, exited, size at the day's end, churn = (entered + exited) / size.

    The pandas twin of lakecdp.segments.insights.daily_sizes (Spark), held equal by a test.
    """
    day = pd.to_datetime(transitions["at"], utc=True).dt.tz_convert(None).dt.normalize()
    counts = (
        transitions.assign(day=day, entered=transitions["transition"] == "entered", exited=transitions["transition"] == "exited")
        .groupby(["segment", "day"], as_index=False)[["entered", "exited"]]
        .sum()
        .sort_values(["segment", "day"])
    )
    counts["size"] = (counts["entered"] - counts["exited"]).groupby(counts["segment"]).cumsum()
    counts["churn"] = ((counts["entered"] + counts["exited"]) / counts["size"]).where(counts["size"] > 0)
    return counts.reset_index(drop=True)


def segment_overlaps(membership: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Segments and the matrix of shared members (diagonal: each segment's size); counts only."""
    segments = sorted(membership["segment"].unique())
    members = {s: set(membership.loc[membership["segment"] == s, "customer_id"]) for s in segments}
    shared = np.array([[len(members[a] & members[b]) for b in segments] for a in segments], dtype=int)
    return segments, shared


def segments_section(view: LakeView) -> Section:
    transitions = view.read("segment_transitions", ["segment", "transition", "at"])
    membership = view.read("segment_membership", ["segment", "customer_id"])
    parts = []
    if transitions is None or transitions.num_rows == 0:
        parts.append(no_data("segment_transitions", "lakecdp demo (or lakecdp segments evaluate)"))
    else:
        daily = daily_segment_sizes(transitions.to_pandas())
        size_figure, size_axes = new_figure("Segment size at the end of each day", "day", "members")
        churn_figure, churn_axes = new_figure("Segment churn per day", "day", "(entered + exited) / size")
        for segment, rows in daily.groupby("segment"):
            size_axes.plot(rows["day"].to_numpy(), rows["size"].to_numpy(), marker=".", label=segment)
            churn_axes.plot(rows["day"].to_numpy(), rows["churn"].to_numpy(), marker=".", label=segment)
        for figure, axes in ((size_figure, size_axes), (churn_figure, churn_axes)):
            axes.legend(fontsize=7)
            time_axis(figure, axes, min_margin_days=1)
        parts.append(plot("segment-sizes", size_figure, "Members per segment from segment_transitions (entered minus exited, cumulated)."))
        parts.append(
            plot(
                "segment-churn",
                churn_figure,
                "Movement per day relative to the segment's size (as `lakecdp segments stats` defines churn).",
            )
        )
    if membership is None or membership.num_rows == 0:
        parts.append(no_data("segment_membership", "lakecdp demo (or lakecdp segments evaluate)"))
    else:
        segments, shared = segment_overlaps(membership.to_pandas())
        sizes = np.maximum(np.diag(shared), 1)
        jaccard = shared / (sizes[:, None] + sizes[None, :] - shared)
        figure, axes = new_figure(
            "Segment overlap (shared members)", "", "", width=1.0 * len(segments) + 3, height=0.8 * len(segments) + 1.6
        )
        axes.grid(False)
        image = axes.imshow(jaccard, cmap="Blues", vmin=0, vmax=1)
        axes.set_xticks(range(len(segments)), segments, rotation=30, ha="right", fontsize=7)
        axes.set_yticks(range(len(segments)), segments, fontsize=7)
        for i in range(len(segments)):
            for j in range(len(segments)):
                axes.text(
                    j, i, f"{shared[i, j]:,}", ha="center", va="center", fontsize=7, color="white" if jaccard[i, j] > 0.5 else "black"
                )
        figure.colorbar(image, ax=axes, label="Jaccard index")
        parts.append(
            plot(
                "segment-overlap",
                figure,
                "Current members shared by each pair of segments (diagonal: the segment's size); colour: Jaccard index.",
            )
        )
    return Section("segments", "Segments: sizes, churn, overlap", "".join(parts))


def models_section(view: LakeView) -> Section:
    champions = view.champions()
    if not champions:
        return Section("models", "Models", no_data("models", "lakecdp train"))
    intent = next((c for c in champions if "calibration_curve" in c["card"]), None)
    clusters = next((c for c in champions if c["card"].get("clusters")), None)
    rows = [
        {
            "model": c["name"],
            "version": c["version"],
            "trained": c["card"].get("created_at"),
            "as of": c["card"].get("as_of"),
            "model type": c["card"].get("model"),
            "needs retraining": (c["drift"] or {}).get("needs_retraining"),
        }
        for c in champions
    ]
    parts = [table(rows)]
    if intent is None:
        parts.append(no_data("purchase intent", "lakecdp train"))
    else:
        parts += _intent_plots(intent)
    if clusters is None:
        parts.append(no_data("clusters", "lakecdp train"))
    else:
        parts.append(_cluster_plot(clusters))
    parts.append(_drift_plot(champions))
    return Section("models", "Models (champions)", "".join(parts))


def _intent_plots(champion: Mapping[str, Any]) -> list[str]:
    card, label = champion["card"], f"{champion['name']} {champion['version']}"
    metrics = (card.get("validation") or {}).get(card.get("family", "")) or {}
    parts = []
    roc = card.get("roc_curve") or {}
    if roc.get("fpr"):
        figure, axes = new_figure(
            f"ROC, validation window (AUC {metrics.get('auc', float('nan')):.3f})",
            "false positive rate",
            "true positive rate",
            width=4.2,
            height=3.4,
        )
        axes.plot(roc["fpr"], roc["tpr"], color=ACCENT, label=label)
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
        axes.legend(fontsize=7)
        parts.append(plot("model-roc", figure, "Purchase intent: ROC on the validation window."))
    else:
        parts.append(no_data("ROC curve", "lakecdp train (cards before the ROC curve was kept have none)"))
    calibration = card.get("calibration_curve") or {}
    if calibration.get("predicted"):
        figure, axes = new_figure(
            "Calibration, validation window", "mean predicted probability", "observed purchase rate", width=4.2, height=3.4
        )
        axes.plot(calibration["predicted"], calibration["observed"], marker="o", color=ACCENT, label=label)
        top = max(calibration["predicted"] + calibration["observed"])
        axes.plot([0, top], [0, top], linestyle=":", color="grey", label="perfect")
        axes.legend(fontsize=7)
        parts.append(plot("model-calibration", figure, "Predicted vs observed purchase rate per decile of the predictions."))
    else:
        parts.append(no_data("calibration", "lakecdp train (the validation window had one class only)"))
    lift = card.get("lift_by_decile") or []
    if lift:
        figure, axes = new_figure(
            "Lift by decile, validation window", "decile (1 = highest scores)", "lift over base rate", width=4.2, height=3.4
        )
        axes.bar([r["decile"] for r in lift], [r["lift"] for r in lift], color=ACCENT)
        axes.axhline(1.0, linestyle=":", color="grey")
        axes.set_xticks(range(1, 11))
        parts.append(plot("model-lift", figure, "Purchase rate of each decile of the predictions relative to the base rate."))
    else:
        parts.append(no_data("lift by decile", "lakecdp train (cards before lift was kept have none)"))
    return parts


def _cluster_plot(champion: Mapping[str, Any]) -> str:
    clusters = champion["card"]["clusters"]
    features = sorted({f for c in clusters for f in (c.get("centroid") or {})})
    means = np.array([[float((c.get("centroid") or {}).get(f) or 0.0) for f in features] for c in clusters])
    spread = means.std(axis=0)
    # Standardized across clusters, per feature: the colour says which cluster stands out on what.
    scaled = (means - means.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    labels = [f"{c['cluster_id']} {c.get('label', '')} ({c.get('share', 0):.0%})" for c in clusters]
    figure, axes = new_figure(
        f"Cluster profiles, {champion['name']} {champion['version']}",
        "",
        "",
        width=max(6.4, 0.28 * len(features) + 3),
        height=0.35 * len(clusters) + 2.2,
    )
    axes.grid(False)
    image = axes.imshow(scaled, cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    axes.set_xticks(range(len(features)), features, rotation=60, ha="right", fontsize=6)
    axes.set_yticks(range(len(clusters)), labels, fontsize=7)
    figure.colorbar(image, ax=axes, label="centroid mean, z across clusters")
    return plot(
        "model-clusters",
        figure,
        "Each cluster's mean feature values, standardized per feature across clusters; share of profiles in brackets.",
    )


def _drift_plot(champions: Sequence[Mapping[str, Any]]) -> str:
    checked = [c for c in champions if (c["drift"] or {}).get("history")]
    if not checked:
        return no_data("drift", "lakecdp score (each scoring run checks drift)")
    figure, (history_axes, feature_axes) = new_panels(2, width=9.0, height=3.4)
    threshold = None
    for champion in checked:
        history = pd.DataFrame(champion["drift"]["history"])
        at = _utc(history["checked_at"])
        if history["score_psi"].notna().any():
            history_axes.plot(at, history["score_psi"], marker="o", label=f"{champion['name']} score")
        history_axes.plot(at, history["max_feature_psi"], marker=".", linestyle="--", label=f"{champion['name']} max feature")
        latest = champion["drift"].get("latest") or {}
        threshold = latest.get("threshold", threshold)
    history_axes.set(title="PSI at each scoring run", xlabel="checked (UTC)", ylabel="PSI")
    history_axes.title.set_fontsize(10)
    history_axes.legend(fontsize=6)
    history_axes.tick_params(axis="x", labelrotation=30, labelsize=7)
    latest = (checked[0]["drift"].get("latest") or {}).get("feature_psi") or {}
    top = sorted(latest.items(), key=lambda kv: -kv[1])[:12][::-1]
    feature_axes.barh([k for k, _ in top], [v for _, v in top], color=ACCENT)
    feature_axes.set(title=f"Feature PSI, latest check of {checked[0]['name']}", xlabel="PSI")
    feature_axes.title.set_fontsize(10)
    feature_axes.tick_params(axis="y", labelsize=6)
    if threshold is not None:
        for axes in (history_axes, feature_axes):
            (axes.axhline if axes is history_axes else axes.axvline)(threshold, color=FAIL, linestyle=":", label="retrain threshold")
    return plot("model-drift", figure, "Population stability of the champions' inputs and scores against their training snapshot.")


def exports_section(view: LakeView, allowed_rates: Mapping[str, float | None]) -> Section:
    log = view.read("export_log", ["destination", "run_id", "batch_id", "customer_id", "state", "reason", "planned_at", "recorded_at"])
    reports = view.export_reports()
    if (log is None or log.num_rows == 0) and not reports:
        return Section("exports", "Export runs", no_data("export_log", "lakecdp export run"))
    parts = []
    if log is not None and log.num_rows:
        effective = effective_export_log(log.to_pandas())
        runs = (
            effective.assign(sent=effective["state"] == SENT, failed=effective["state"] == FAILED)
            .groupby(["destination", "run_id"], as_index=False)
            .agg(planned_at=("planned_at", "min"), sent=("sent", "sum"), failed=("failed", "sum"))
            .sort_values("planned_at")
            .tail(24)
        )
        labels = [f"{d}\n{str(p)[:16]}" for d, p in zip(runs["destination"], runs["planned_at"])]
        figure, axes = new_figure("Members per export run", "", "members", width=max(6.4, 0.6 * len(runs) + 2))
        axes.bar(labels, runs["sent"].to_numpy(), color=PASS, label="sent")
        axes.bar(labels, runs["failed"].to_numpy(), bottom=runs["sent"].to_numpy(), color=FAIL, label="failed")
        axes.tick_params(axis="x", labelsize=6)
        axes.legend(fontsize=7)
        parts.append(plot("export-outcomes", figure, "Each run's members sent and failed (export_log, terminal state per batch member)."))
        failed = effective.loc[effective["state"] == FAILED, "reason"].map(reason_label).value_counts()
    else:
        failed = pd.Series(dtype=int)
        parts.append(no_data("export_log", "lakecdp export run"))
    skipped = _skipped_by_reason(reports)
    reasons = pd.concat([failed.rename(lambda r: f"failed: {r}"), skipped.rename(lambda r: f"skipped: {r}")]).sort_values().tail(20)
    if len(reasons):
        figure, axes = new_figure("Members not delivered, by reason", "members", "", width=7.5, height=0.25 * len(reasons) + 1.2)
        axes.barh(
            [r[:70] for r in reasons.index], reasons.to_numpy(), color=[FAIL if r.startswith("failed") else MUTED for r in reasons.index]
        )
        axes.tick_params(axis="y", labelsize=7)
        parts.append(
            plot(
                "export-reasons",
                figure,
                "Failed members by the ESP's reason (all runs) and skipped members by consent or data reason (latest run report per destination).",
            )
        )
    else:
        parts.append("<p>No member failed or was skipped.</p>")
    parts.append(_rate_plot(reports, allowed_rates))
    return Section("exports", "Export runs", "".join(parts))


def _latest_per_destination(reports: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    latest: dict[str, Mapping[str, Any]] = {}
    for report in reports:  # oldest first: later runs win
        for destination in report.get("destinations") or {}:
            latest[destination] = report
    return latest


def _skipped_by_reason(reports: Sequence[Mapping[str, Any]]) -> pd.Series:
    counts: dict[str, int] = {}
    for destination, report in _latest_per_destination(reports).items():
        for segment in report["destinations"][destination].values():
            for reason, n in (segment.get("skipped_by_reason") or {}).items():
                counts[reason_label(reason)] = counts.get(reason_label(reason), 0) + int(n)
    return pd.Series(counts, dtype=int)


def achieved_rates(reports: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Requests per second each destination's latest run achieved: its HTTP requests (retries included) over the run's wall time."""
    rates = {}
    for destination, report in _latest_per_destination(reports).items():
        if not report.get("finished_at"):
            continue
        seconds = (datetime.fromisoformat(report["finished_at"]) - datetime.fromisoformat(report["started_at"])).total_seconds()
        requests = (report.get("requests") or {}).get(destination)
        if requests and seconds > 0:
            rates[destination] = requests / seconds
    return rates


def _rate_plot(reports: Sequence[Mapping[str, Any]], allowed_rates: Mapping[str, float | None]) -> str:
    achieved = achieved_rates(reports)
    if not achieved:
        return no_data("export run reports", "the lakecdp_export DAG, or lakecdp export run --report <lake>/_export_reports/<run>.json")
    destinations = sorted(achieved)
    figure, axes = new_figure(
        "Request rate, latest run per destination", "", "requests per second", width=max(4.5, 1.2 * len(destinations) + 2)
    )
    axes.bar(destinations, [achieved[d] for d in destinations], color=ACCENT, label="achieved")
    for i, destination in enumerate(destinations):
        allowed = allowed_rates.get(destination)
        if allowed:
            axes.hlines(allowed, i - 0.4, i + 0.4, color=FAIL, linewidth=2, label="allowed" if i == 0 else "_nolegend_")
    axes.legend(fontsize=7)
    return plot(
        "export-rate",
        figure,
        "HTTP requests per second over each destination's latest run, against the strictest rate limit in conf (esp.yaml).",
    )


def quality_section(view: LakeView) -> Section:
    latest = view.quality_latest()
    if not latest:
        return Section("quality", "Quality gates", no_data("quality results", "lakecdp quality run SUITE"))
    rows = [
        {
            "suite": suite,
            "result": "passed" if r.get("success") else "FAILED",
            "run": r.get("run_key"),
            "as of": r.get("as_of"),
            "rows": r.get("row_count"),
            "failed expectations": ", ".join(o.get("expectation", "") for o in r.get("outcomes") or [] if not o.get("success")),
        }
        for suite, r in sorted(latest.items())
    ]
    suites = sorted(latest)
    figure, axes = new_figure("Gate results per run", "as of (UTC)", "", height=0.35 * len(suites) + 1.6)
    for y, suite in enumerate(suites):
        history = pd.DataFrame(view.quality_history(suite) or [latest[suite]])
        colors = [PASS if ok else FAIL for ok in history["success"]]
        axes.scatter(_utc(history["as_of"]), [y] * len(history), c=colors, s=36, marker="s")
    axes.set_yticks(range(len(suites)), suites, fontsize=7)
    time_axis(figure, axes)
    return Section(
        "quality", "Quality gates", table(rows) + plot("quality-history", figure, "Each suite's runs: green passed, red failed.")
    )


def experiments_section(view: LakeView) -> Section:
    reports = view.experiment_reports()
    if not reports:
        return Section("experiments", "Experiments", no_data("experiment results", "lakecdp experiments report EXPERIMENT"))
    rows, labels, lifts, lows, highs, significant = [], [], [], [], [], []
    for report in sorted(reports, key=lambda r: r["name"]):
        rows.append({"experiment": report["name"], "primary metric": report["primary_metric"], "verdict": report["verdict"]})
        for metric, comparisons in report["comparisons"].items():
            for c in comparisons:
                low, high = c["relative_lift_ci"]
                if c["relative_lift"] is None or low is None or high is None:
                    continue
                labels.append(f"{report['name']}: {metric} {c['variant']}")
                lifts.append(c["relative_lift"])
                lows.append(c["relative_lift"] - low)
                highs.append(high - c["relative_lift"])
                significant.append(c["is_significant"])
    parts = [table(rows)]
    if labels:
        figure, axes = new_figure("Relative lift vs control (95% CI)", "relative lift", "", width=7.5, height=0.3 * len(labels) + 1.4)
        y = np.arange(len(labels))
        for i in y:
            axes.errorbar(lifts[i], i, xerr=[[lows[i]], [highs[i]]], fmt="o", capsize=4, color=PASS if significant[i] else MUTED)
        axes.axvline(0.0, color="grey", linestyle=":")
        axes.set_yticks(y, labels, fontsize=7)
        axes.xaxis.set_major_formatter(lambda value, _: f"{value:+.0%}")
        parts.append(
            plot("experiment-lift", figure, "Each variant against the control per metric; green: significant after Holm's adjustment.")
        )
    else:
        parts.append(no_data("experiment comparisons", "lakecdp experiments report EXPERIMENT (after deliveries)"))
    return Section("experiments", "Experiment lift", "".join(parts))
