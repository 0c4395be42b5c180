"""`lakecdp train`, `lakecdp score`, `lakecdp models list|show|promote`."""

from __future__ import annotations

import argparse
import json
import sys

from lakecdp.cli_args import add_lake_argument, instant
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train behaviour clusters and the purchase-intent model; promote if better")
    train.add_argument("--as-of", type=instant, help="training instant (default: the last event time in bronze)")
    add_lake_argument(train)
    train.add_argument("--truth", help="generator truth file (truth/customers.jsonl): adds ARI and planted-propensity metrics to the cards")
    train.set_defaults(handler=_train)

    score = commands.add_parser("score", help="score every profile with the champion models into profile_scores")
    add_lake_argument(score)
    score.add_argument("--as-of", type=instant, help="feature instant (default: the last event time in bronze)")
    score.add_argument("--customers", help="comma-separated customer ids: re-score only these")
    score.set_defaults(handler=_score)

    models = commands.add_parser("models", help="list, inspect and promote registered model versions")
    actions = models.add_subparsers(dest="models_command", required=True)
    listing = actions.add_parser("list", help="every version with its key metric, champion and drift flags")
    show = actions.add_parser("show", help="a version's card (metrics, promotion, drift)")
    show.add_argument("version", help="MODEL/VERSION, e.g. purchase_intent/v0002 (or VERSION with --model)")
    promote = actions.add_parser("promote", help="make a version the champion (manual override, logged)")
    promote.add_argument("version", help="MODEL/VERSION, e.g. purchase_intent/v0002 (or VERSION with --model)")
    for action, handler in ((listing, _list), (show, _show), (promote, _promote)):
        add_lake_argument(action, also="the registry defaults to <lake>/_models")
        action.add_argument("--model", help="model name when VERSION alone is ambiguous")
        action.set_defaults(handler=handler)


def _context(args: argparse.Namespace, settings: Settings):
    from models.registry import registry_for
    from models.settings import parse_model_settings

    model_settings = parse_model_settings(settings.models)
    lake_root = args.lake or settings.lake.root
    return model_settings, lake_root, registry_for(model_settings.registry_root, lake_root)


def _open_lake(settings: Settings, lake_root: str):
    from lakecdp.lake import lake_for

    return lake_for(settings, root=lake_root)


def _fail(exc: Exception) -> int:
    print(f"lakecdp: {exc}", file=sys.stderr)
    return 2


def _train(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from lakecdp.clock import SystemClock
    from models.errors import TrainingDataError
    from models.registry import RegistryError
    from models.training import train_models

    model_settings, lake_root, registry = _context(args, settings)
    truth = pd.read_json(args.truth, lines=True) if args.truth else None
    try:
        outcome = train_models(
            _open_lake(settings, lake_root), model_settings, registry, clock=SystemClock(), as_of=args.as_of, truth=truth, log=print
        )
    except (RegistryError, TrainingDataError) as exc:
        return _fail(exc)
    for registered in (outcome.clusters, outcome.intent):
        print(f"{registered.ref}: {'PROMOTED' if registered.promoted else 'kept champion'} - {registered.reason}")
        print(f"  card: {registry.card_html_path(registered.ref)}")
    print(f"trained in {outcome.seconds:.0f}s")
    return 0


def _score(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from models.errors import TrainingDataError
    from models.registry import RegistryError
    from models.scoring import score_lake

    model_settings, lake_root, registry = _context(args, settings)
    customers = [c.strip() for c in args.customers.split(",") if c.strip()] if args.customers else None
    try:
        outcome = score_lake(
            _open_lake(settings, lake_root), model_settings, registry, clock=SystemClock(), as_of=args.as_of, customers=customers
        )
    except (RegistryError, TrainingDataError) as exc:
        return _fail(exc)
    print(
        f"scored {outcome.rows:,} profiles as of {outcome.as_of.isoformat()} with purchase_intent/{outcome.intent_version} "
        f"and behaviour_clusters/{outcome.cluster_version} into {lake_root}/profile_scores"
    )
    for ref, report in (outcome.drift or {}).items():
        flag = "NEEDS RETRAINING: " + "; ".join(report["reasons"][:3]) if report["needs_retraining"] else "stable"
        print(f"  drift {ref}: score PSI {report['score_psi']}, max feature PSI {report['max_feature_psi']:.3f} -> {flag}")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import ModelRef

    _, _, registry = _context(args, settings)
    names = [args.model] if args.model else registry.names()
    if not any(registry.versions(n) for n in names):
        print(f"no models registered under {registry.root}; run `lakecdp train`")
        return 0
    for name in names:
        champion = registry.champion(name)
        print(name)
        for version in registry.versions(name):
            ref = ModelRef(name, version)
            card, drift = registry.card(ref), registry.drift(ref)
            marks = ("champion " if champion and champion.version == version else "") + (
                "needs-retraining" if drift.get("needs_retraining") else ""
            )
            print(f"  {version}  {card.get('created_at', '')[:19]}  {card.get('model', ''):<62} {_headline(card):<28} {marks}")
    return 0


def _headline(card: dict) -> str:
    validation = card.get("validation") or {}
    if "silhouette" in validation:
        return f"silhouette {validation['silhouette']:.3f}"
    chosen = validation.get(card.get("family", ""), {})
    auc, pr_auc = chosen.get("auc"), chosen.get("pr_auc")
    return f"AUC {auc:.3f} PR-AUC {pr_auc:.3f}" if auc is not None and pr_auc is not None else ""


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import RegistryError

    _, _, registry = _context(args, settings)
    try:
        ref = registry.resolve(args.version, args.model)
        card = registry.card(ref)
    except RegistryError as exc:
        return _fail(exc)
    keep = (
        "model",
        "created_at",
        "as_of",
        "snapshots",
        "training_data",
        "code_version",
        "validation",
        "validation_auc_by_cluster",
        "clusters",
        "truth",
        "promotion",
    )
    summary = {k: card[k] for k in keep if card.get(k) is not None}
    champion = registry.champion(ref.name)
    summary["is_champion"] = bool(champion and champion.version == ref.version)
    summary["drift"] = registry.drift(ref).get("latest")
    print(json.dumps(summary, indent=2, default=str))
    print(f"card: {registry.card_html_path(ref)}")
    return 0


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from models.registry import RegistryError

    _, _, registry = _context(args, settings)
    try:
        ref = registry.resolve(args.version, args.model)
        previous = registry.champion(ref.name)
        registry.promote(ref, reason="manual promotion (lakecdp models promote)", at=SystemClock().now())
    except RegistryError as exc:
        return _fail(exc)
    print(f"{ref} is now the champion of {ref.name} (was {previous.version if previous else 'none'})")
    return 0
