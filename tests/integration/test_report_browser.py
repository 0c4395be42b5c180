"""The report in headless Chromium: every plot drawn at a real size, nothing in the console."""

from __future__ import annotations

import pytest

from lakecdp.clock import FrozenClock
from lakecdp.observe.lakeview import LakeView
from lakecdp.observe.report import PLOTS, render_report as render_page
from tests.browser import missing_browser, render_report
from tests.observed_lake import NOW, build_observed_lake

pytestmark = pytest.mark.integration


def test_every_plot_renders_in_chromium_without_console_errors(tmp_path):
    # No skip: CI installs chromium and chromium-driver (.ci/run); without them this fails and says so.
    assert missing_browser() is None, missing_browser()
    root = tmp_path / "lake"
    build_observed_lake(root)
    page = tmp_path / "report.html"
    page.write_text(render_page(LakeView(str(root)), FrozenClock(NOW), {"webhook": 20.0}), encoding="utf-8")

    seen = render_report(page)

    assert seen["title"] == "lakecdp report"
    assert sorted(seen["plots"]) == sorted(PLOTS)
    for plot_id, plot in seen["plots"].items():
        assert plot["width"] > 100 and plot["height"] > 100, plot_id
        assert plot["svg_elements"] > 10, plot_id  # axes, ticks and marks, not an empty frame
    assert seen["missing_notes"] == []
    assert seen["console_errors"] == []


def test_an_empty_lake_renders_its_notes_without_console_errors(tmp_path):
    assert missing_browser() is None, missing_browser()
    page = tmp_path / "report.html"
    page.write_text(render_page(LakeView(str(tmp_path / "lake")), FrozenClock(NOW), {}), encoding="utf-8")

    seen = render_report(page)

    assert seen["plots"] == {} and seen["console_errors"] == []
    assert {"stream_metrics", "events", "models", "export_log", "quality results", "experiment results"} <= set(seen["missing_notes"])


def test_the_browser_check_sees_console_errors_and_empty_plots(tmp_path):
    assert missing_browser() is None, missing_browser()
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><title>broken</title><figure data-plot='empty'><svg width='0' height='0'></svg></figure>"
        "<script>console.error('plot failed')</script>",
        encoding="utf-8",
    )

    seen = render_report(page)

    assert seen["plots"] == {"empty": {"width": 0, "height": 0, "svg_elements": 0}}
    assert len(seen["console_errors"]) == 1 and "plot failed" in seen["console_errors"][0]
