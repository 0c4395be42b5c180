"""Model cards: the JSON record is built by training; this renders it as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from models.metrics import calibration_table


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _axes(title: str, xlabel: str, ylabel: str):
    figure = Figure(figsize=(4.2, 3.4), dpi=100, layout="tight")
    axes = figure.add_subplot()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def roc_plot(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> str:
    figure, axes = _axes("ROC (validation window)", "false positive rate", "true positive rate")
    for label, score in scores.items():
        fpr, tpr, _ = roc_curve(y, score)
        axes.plot(fpr, tpr, label=label)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.legend(fontsize=7)
    return _png(figure)


def precision_recall_plot(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> str:
    figure, axes = _axes("Precision-recall (validation window)", "recall", "precision")
    for label, score in scores.items():
        precision, recall, _ = precision_recall_curve(y, score)
        axes.plot(recall, precision, label=label)
    axes.axhline(float(np.mean(y)), linestyle=":", color="grey", label="base rate")
    axes.legend(fontsize=7)
    return _png(figure)


def calibration_plot(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> str:
    figure, axes = _axes("Calibration (validation window)", "mean predicted probability", "observed purchase rate")
    top = 0.0
    for label, score in scores.items():
        table = calibration_table(y, score)
        axes.plot(table["predicted"], table["observed"], marker="o", label=label)
        top = max([top, *table["predicted"], *table["observed"]])
    axes.plot([0, top or 1], [0, top or 1], linestyle=":", color="grey", label="perfect")
    axes.legend(fontsize=7)
    return _png(figure)


def silhouette_plot(curve: Mapping[int, float], chosen_k: int) -> str:
    figure, axes = _axes("Silhouette by k", "k (clusters)", "silhouette")
    ks = sorted(curve)
    axes.plot(ks, [curve[k] for k in ks], marker="o")
    axes.axvline(chosen_k, linestyle=":", color="red", label=f"chosen k={chosen_k}")
    axes.legend(fontsize=7)
    return _png(figure)


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


def _section(title: str, content: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{content}"


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}"
    "img{margin:4px;border:1px solid #eee}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}"
)


def render_card_html(card: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """One HTML page: summary, metric tables, embedded PNG plots, the full JSON card at the end.

    `{{version}}` is filled in by the registry once the version id is known.
    """
    name = html.escape(str(card.get("name", "model")))
    summary = [{"key": k, "value": card.get(k)} for k in ("model", "created_at", "as_of", "code_version", "training_data") if k in card]
    parts = [f"<h1>{name} {{{{version}}}}</h1>", _table(summary)]
    for title, key in (("Validation metrics", "validation"), ("Cross-validation", "cross_validation"), ("Planted truth", "truth")):
        if card.get(key):
            parts.append(_section(title, _table(_rows_of(card[key]))))
    baseline = card.get("baseline") or {}
    if "intent" in baseline:
        compared = {
            "intent model": baseline["intent"],
            "BG/NBD expected orders": baseline["bgnbd"],
            "BG/NBD P(order)": baseline["bgnbd_p_order"],
        }
        title = f"Against the BG/NBD baseline ({baseline['rows']:,} {baseline['population']})"
        parts.append(_section(title, _table(_rows_of(compared))))
    calibration = card.get("calibration")
    if isinstance(calibration, Mapping):
        rows = _rows_of({"validation before": calibration["validation_before"], "validation after": calibration["validation_after"]})
        rows += _rows_of({f"held out: {m}": v for m, v in calibration["held_out"].items()})
        parts.append(_section(f"Calibration: {html.escape(calibration['method'])}", _table(rows)))
    base = card.get("customer_base") or {}
    if base.get("bgnbd"):
        fits = {"BG/NBD": base["bgnbd"], **({"Gamma-Gamma": base["gamma_gamma"]} if base.get("gamma_gamma") else {})}
        parts.append(_section(f"Customer base (clv_12m in {html.escape(str(base['currency']))})", _table(_rows_of(fits))))
    notes = [*base.get("notes", []), *(f"{name} left out: {why}" for name, why in (card.get("dropped_features") or {}).items())]
    if notes:
        parts.append(_section("Notes", "".join(f"<p>{html.escape(note)}</p>" for note in notes)))
    if card.get("family_selection"):
        parts.append(_section("Cluster family selection", _table(_rows_of(card["family_selection"]["families"]))))
    if card.get("promotion"):
        parts.append(_section("Promotion decision", _table([card["promotion"]])))
    if card.get("clusters"):
        parts.append(_section("Clusters", _table(card["clusters"])))
    if plots:
        images = "".join(f'<img alt="{html.escape(t)}" src="data:image/png;base64,{png}">' for t, png in plots.items())
        parts.append(_section("Plots", images))
    parts.append(_section("Features", "<p>" + html.escape(", ".join(card.get("features", []))) + "</p>"))
    parts.append(_section("Card (JSON)", f"<pre>{html.escape(json.dumps(card, indent=2, default=str))}</pre>"))
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"


def _rows_of(section: Any) -> list[Mapping[str, Any]]:
    """A metrics mapping as table rows: {model: {metric: value}} -> one row per model."""
    if isinstance(section, list):
        return section
    if all(isinstance(v, Mapping) for v in section.values()):
        return [{"model": k, **{m: v for m, v in values.items() if not isinstance(v, (dict, list))}} for k, values in section.items()]
    return [{k: v for k, v in section.items() if not isinstance(v, (dict, list))}]
