"""`lakecdp privacy erase|process-erasures`."""
from __future__ import annotations

import argparse

from lakecdp.cli_args import open_lake_for
from lakecdp.config import Settings


def register(commands: argparse._SubParsersAction) -> None:
    privacy = commands.add_parser("privacy", help="erasure requests")
    actions = privacy.add_subparsers(dest="privacy_command", required=True)
    erase = actions.add_parser("erase", help="queue the erasure of a customer (processed by process-erasures)")
    erase.add_argument("customer")
    erase.add_argument("--lake", help="lake root (default: lake.root from conf)")
    erase.set_defaults(handler=_erase)
    process = actions.add_parser("process-erasures", help="erase every queued customer everywhere and record proofs")
    process.add_argument("--lake", help="lake root (default: lake.root from conf)")
    process.add_argument("--landing", help="landing root (default: landing.root from conf)")
    process.set_defaults(handler=_process)


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.privacy.erasure import request_erasure

    request_id = request_erasure(open_lake_for(args, settings), args.customer, SystemClock().now())
    print(f"erasure request {request_id} queued; run `lakecdp privacy process-erasures`")
    return 0


def _process(args: argparse.Namespace, settings: Settings) -> int:
    from lakecdp.clock import SystemClock
    from lakecdp.privacy.erasure import process_erasures

    proofs = process_erasures(open_lake_for(args, settings), args.landing or settings.landing.root, SystemClock().now())
    for proof in proofs:
        print(f"{proof.request_id}: {sum(proof.rows_deleted.values())} rows in {len(proof.rows_deleted)} tables, {proof.landing_lines_deleted} landing lines")
    print(f"{len(proofs)} erasure(s) processed")
    return 0
