"""What `lakecdp stream run` tells the operator when it stops."""

from lakecdp.stream.job import StreamRun


def test_the_summary_counts_quarantined_and_duplicate_lines_and_says_where_the_reasons_are():
    run = StreamRun(
        [
            {"batch_id": 0, "events": 58, "quarantined": 2, "duplicates": 1},
            {"batch_id": 1, "events": 1_200, "quarantined": 0, "duplicates": 3},
        ]
    )
    assert run.summary().startswith("2 batches, 1,258 new events, 2 quarantined, 4 duplicates (reasons: lakecdp sql ")
    assert StreamRun([{"batch_id": 0, "events": 5, "quarantined": 0, "duplicates": 0}]).summary() == (
        "1 batches, 5 new events, 0 quarantined, 0 duplicates"
    )
