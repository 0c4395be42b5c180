"""A micro-batch's lines read from the checkpoint's source log by Python equal the lines Spark reads."""

from __future__ import annotations

import pytest

from lakecdp.stream.job import file_lines
from lakecdp.stream.source_log import batch_files, read_lines

pytestmark = pytest.mark.integration

# Line ends and bytes as they come: LF, CRLF, a lone CR, empty lines, Latin-1, a last line without
# its newline; one file name with a space (Spark names it with %20).
FILES = {
    "a.jsonl": b'{"n": 1}\n{"n": 2}\n',
    "b c.jsonl": b'{"n": 3}\r\n\r\n{"n": "caf\xe9"}\r\n',
    "d.jsonl": b'{"n": 5}\r{"n": 6}',
    "e.jsonl": b"\n\n",
    "f.jsonl": b"",
}


def test_python_reads_each_batch_as_spark_does_across_compacted_source_logs(spark, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    names = []
    # 14 batches of one file each: the source log compacts at entry 9 (every 10), so entries 0-9 are read from 9.compact.
    for n in range(14):
        name, body = list(FILES.items())[n % len(FILES)]
        names.append(f"{n:02d}-{name}")
        (landing / names[-1]).write_bytes(body)
    checkpoint = str(tmp_path / "ckpt")
    seen: dict[int, tuple[list, list | None, list | None]] = {}

    def body(lines, batch_id):
        by_spark = sorted((r.source_file, bytes(r.raw)) for r in lines.selectExpr("cast(raw as binary) as raw", "source_file").collect())
        files = batch_files(checkpoint, batch_id)
        read = None if files is None else read_lines(files, max_lines=100, max_bytes=10_000)
        seen[batch_id] = (by_spark, None if read is None else sorted(zip(read[1], read[0])), files)

    query = (
        file_lines(spark, str(landing), max_files_per_trigger=1)
        .writeStream.option("checkpointLocation", checkpoint)
        .foreachBatch(body)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()

    assert sorted(seen) == list(range(14))
    for batch_id, (by_spark, by_python, _) in seen.items():
        assert by_python == by_spark, batch_id
    # One file per batch, every file once (the source picks files of equal age in no set order).
    assert sorted(f.rsplit("/", 1)[1] for _, _, files in seen.values() for f in files) == sorted(n.replace(" ", "%20") for n in names)
    assert (tmp_path / "ckpt" / "sources" / "0" / "9.compact").exists()
    # After the run, entries below the compaction are only in 9.compact (Spark deletes the plain files later).
    for entry in range(9):
        (tmp_path / "ckpt" / "sources" / "0" / str(entry)).unlink(missing_ok=True)
    assert all(batch_files(checkpoint, batch_id) == seen[batch_id][2] for batch_id in range(9))
    assert batch_files(checkpoint, 99) is None  # no such batch: the caller reads through Spark


def test_a_batch_over_the_bounds_or_not_local_is_left_to_spark(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3}\n')
    uri = f"file:{path}"
    assert read_lines([uri], max_lines=3, max_bytes=1000) == ([b'{"n": 1}', b'{"n": 2}', b'{"n": 3}'], [uri] * 3)
    assert read_lines([uri], max_lines=2, max_bytes=1000) is None
    assert read_lines([uri], max_lines=3, max_bytes=10) is None
    assert read_lines(["s3a://bucket/a.jsonl"], max_lines=3, max_bytes=1000) is None
    assert read_lines([f"file:{tmp_path}/gone.jsonl"], max_lines=3, max_bytes=1000) is None
    assert batch_files("s3a://bucket/ckpt", 0) is None
