"""Processed landing files expire after landing.retention, and only once their batch is committed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lakecdp.events.retention import LEDGER, expire_processed, record_processed

AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _landing(tmp_path, *names):
    source = tmp_path / "landing" / "events"
    source.mkdir(parents=True)
    for name in names:
        (source / name).write_text('{"type": "identify"}\n')
    return source


def _commit(checkpoint, batch_id):
    (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
    (checkpoint / "commits" / str(batch_id)).write_text("v1\n{}\n")


def test_files_expire_after_retention_once_their_batch_is_committed(tmp_path):
    source = _landing(tmp_path, "part-1.jsonl", "part-2.jsonl", "part 3.jsonl")
    checkpoint = tmp_path / "ckpt"
    record_processed(str(source), [f"file://{source}/part-1.jsonl"], checkpoint=str(checkpoint), batch_id=0, at=AT)
    record_processed(
        str(source),
        [f"file://{source}/part-2.jsonl", f"file://{source}/part%203.jsonl"],
        checkpoint=str(checkpoint),
        batch_id=1,
        at=AT + timedelta(hours=1),
    )
    _commit(checkpoint, 0)

    assert expire_processed(str(tmp_path / "landing"), timedelta(days=7), AT + timedelta(days=7) - timedelta(seconds=1)) == []
    assert expire_processed(str(tmp_path / "landing"), timedelta(days=7), AT + timedelta(days=30)) == [str(source / "part-1.jsonl")]
    # Batch 1 is past its retention but not committed: a replay still needs its files.
    assert (source / "part-2.jsonl").exists() and (source / "part 3.jsonl").exists()

    _commit(checkpoint, 1)
    assert expire_processed(str(tmp_path / "landing"), None, AT + timedelta(days=30)) == []
    assert (source / "part-2.jsonl").exists()  # retention None keeps every file
    expired = expire_processed(str(tmp_path / "landing"), timedelta(days=7), AT + timedelta(days=30))
    assert sorted(expired) == [str(source / "part 3.jsonl"), str(source / "part-2.jsonl")]
    assert (source / LEDGER).read_text() == ""


def test_a_torn_ledger_line_is_kept_and_the_rest_still_expires(tmp_path):
    source = _landing(tmp_path, "part-1.jsonl")
    checkpoint = tmp_path / "ckpt"
    (source / LEDGER).write_text('{"file": "/x", "checkp')
    (source / LEDGER).write_text((source / LEDGER).read_text() + "\n")
    record_processed(str(source), [str(source / "part-1.jsonl")], checkpoint=str(checkpoint), batch_id=0, at=AT)
    _commit(checkpoint, 0)

    assert expire_processed(str(source), timedelta(0), AT) == [str(source / "part-1.jsonl")]
    assert (source / LEDGER).read_text() == '{"file": "/x", "checkp\n'
