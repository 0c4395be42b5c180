"""`lakecdp segments validate|preview`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lakecdp.cli_args import add_lake_argument, customer_key, instant, open_lake_for
from lakecdp.config import Settings

if TYPE_CHECKING:
    import pandas as pd


def register(commands: argparse._SubParsersAction) -> None:
    segments = commands.add_parser("segments", help="validate and preview segment rules")
    actions = segments.add_subparsers(dest="segments_command", required=True)
    validate = actions.add_parser("validate", help="check the segments in conf")
    validate.set_defaults(handler=_validate)
    preview = actions.add_parser("preview", help="sizes the rules would have, without saving")
    add_lake_argument(preview)
    preview.add_argument("--as-of", type=instant, help="evaluation instant (default: demo.end, else now)")
    preview.add_argument("--days", type=int, default=0, help="also show the size at the end of each of the last N days")
    preview.set_defaults(handler=_preview)

    explain = actions.add_parser("explain", help="why is (or isn't) a customer in a segment")
    explain.add_argument("customer")
    explain.add_argument("segment")
    explain.add_argument("--as-of", type=instant, help="answer as of this instant (default: now, from the tables)")
    add_lake_argument(explain)
    explain.set_defaults(handler=_explain)

    audit = actions.add_parser("audit", help="sizes over time, overlaps and churn of the segments")
    add_lake_argument(audit)
    audit.add_argument("--plot", default="segment_audit.png", help="where to write the sizes-over-time plot")
    audit.set_defaults(handler=_audit)

    tick = actions.add_parser("tick", help="fire due segment timers (time-driven entries and exits)")
    add_lake_argument(tick)
    tick.add_argument("--as-of", type=instant, help="the instant to fire timers for (default: now)")
    tick.set_defaults(handler=_tick)


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.segments import segments_of

    for segment in segments_of(settings):
        print(f"ok  {segment.name:<28} version {segment.version}  {segment.description}")
    return 0


def _sizes_as_of(lake, segments, as_of) -> dict[str, int]:
    from pyspark.sql import functions as F

    from lakecdp.identity.resolved import resolved_events
    from lakecdp.profiles import build_profile_features
    from lakecdp.segments import evaluate_segments

    events = resolved_events(lake)
    # Profiles are rebuilt as of the instant so attribute rules see that moment, not today.
    evaluated = evaluate_segments(
        events, build_profile_features(events, as_of), segments, as_of, lake.read("profile_scores"), customers=lake.read("customers")
    )
    counted = evaluated.groupBy("segment").agg(F.count(F.when(F.col("is_member"), True)).alias("members")).collect()
    return {row["segment"]: row["members"] for row in counted}


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    from lakecdp.clock import SystemClock
    from lakecdp.segments import segments_of

    segments = segments_of(settings)
    as_of = args.as_of or settings.demo.end or SystemClock().now()
    lake = open_lake_for(args, settings)
    instants = [as_of - timedelta(days=d) for d in range(args.days, 0, -1)] + [as_of]
    columns = [(instant, _sizes_as_of(lake, segments, instant)) for instant in instants]
    print("segment sizes (not saved):")
    print(f"  {'segment':<28}" + "".join(f"{instant:%m-%d %H:%M}".rjust(13) for instant, _ in columns))
    for segment in segments:
        print(f"  {segment.name:<28}" + "".join(f"{sizes.get(segment.name, 0):>13,}" for _, sizes in columns))
    return 0


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from pyspark.sql import functions as F

    from lakecdp.clock import SystemClock
    from lakecdp.identity.resolved import resolved_events
    from lakecdp.profiles import build_profile_features
    from lakecdp.segments import evaluate_segments, segments_of
    from lakecdp.segments.insights import membership_as_of

    segments = segments_of(settings)
    segment = next((s for s in segments if s.name == args.segment), None)
    if segment is None:
        print(f"lakecdp: no segment {args.segment!r}; known: {', '.join(s.name for s in segments)}")
        return 2
    lake = open_lake_for(args, settings)
    args.customer = customer_key(args.customer, lake)
    recorded = membership_as_of(lake.read("segment_transitions"), args.customer, args.segment, args.as_of)
    when = args.as_of.isoformat() if args.as_of else "now"
    if recorded is None:
        print(f"recorded: {args.customer} never entered {args.segment} (as of {when})")
    else:
        state = "IN" if recorded["transition"] == "entered" else "OUT"
        print(
            f"recorded: {state} since {recorded['at']:%Y-%m-%d %H:%M:%S} UTC ({recorded['transition']}, rule version {recorded['rule_version']})"
        )
        print(f"  because: {json.dumps(json.loads(recorded['reason'] or '{}'), indent=None)}")
    as_of = args.as_of or SystemClock().now()
    events = resolved_events(lake, [args.customer])
    profile = build_profile_features(events, as_of)
    evaluated = evaluate_segments(
        events,
        profile,
        [segment],
        as_of,
        lake.read("profile_scores").filter(F.col("customer_id") == args.customer),
        customers=lake.read("customers").filter(F.col("customer_id") == args.customer),
        all_segments=segments,
    )
    row = evaluated.filter(F.col("customer_id") == args.customer).first()
    if row is None:
        print(f"recomputed as of {as_of.isoformat()}: no events for {args.customer}")
    else:
        print(f"recomputed from events as of {as_of.isoformat()}: {'IN' if row.is_member else 'OUT'} (rule version {row.rule_version})")
        print(f"  conditions saw: {row.reason}")
        if row.next_check_at:
            print(f"  time alone can change this at {row.next_check_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.segments.insights import daily_sizes, overlaps

    lake = open_lake_for(args, settings)
    # pyspark types toPandas() through an alias that does not resolve without pandas stubs.
    sizes: pd.DataFrame = daily_sizes(lake.read("segment_transitions")).orderBy("segment", "day").toPandas()
    pairs: pd.DataFrame = overlaps(lake.read("segment_membership")).orderBy("segment_a", "segment_b").toPandas()
    print("sizes over time (entries, exits, size at end of day, churn):")
    print(sizes.to_string(index=False) if len(sizes) else "  no transitions recorded yet")
    print("\noverlaps between segments (the brief warns about over-segmentation: high Jaccard = near-duplicates):")
    print(pairs.to_string(index=False) if len(pairs) else "  no two segments share members")
    if len(sizes):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(8, 4))
        for name, rows in sizes.groupby("segment"):
            axis.plot(rows["day"], rows["size"], marker="o", label=name)
        axis.set_title("segment sizes over time")
        axis.set_ylabel("members")
        axis.legend(fontsize=7)
        figure.autofmt_xdate()
        figure.savefig(args.plot, dpi=100, bbox_inches="tight")
        print(f"\nplot: {args.plot}")
    return 0


def _tick(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.flows.timers import fire_due_timers
    from lakecdp.segments import segments_of

    now = args.as_of or SystemClock().now()
    fired = fire_due_timers(open_lake_for(args, settings), segments_of(settings), now)
    print(f"{len(fired)} customers re-evaluated by timers due at or before {now.isoformat()}")
    return 0
