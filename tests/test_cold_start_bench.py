"""bench/cold_start.py's own arithmetic: which AWS operations count as the same work, and
the order of each round's samples (the bench itself is timed after pytest: `make test`)."""

from bench.cold_start import op_counts, op_difference, round_order


def test_same_operations_in_another_order_are_the_same_work() -> None:
    recorded = op_counts([("dynamodb", "Query"), ("dynamodb", "BatchGetItem"), ("sqs", "SendMessage")])
    sample = op_counts([["sqs", "SendMessage"], ["dynamodb", "BatchGetItem"], ["dynamodb", "Query"]])
    assert op_difference(recorded, sample) == ""


def test_an_operation_more_or_fewer_is_named_with_its_count() -> None:
    recorded = op_counts([("dynamodb", "Query"), ("dynamodb", "BatchGetItem")])
    # The empty page: the Query alone (what the old recording on an empty account held).
    assert op_difference(recorded, op_counts([("dynamodb", "Query")])) == "-1 dynamodb.BatchGetItem"
    # A trigger ignored sends other operations than the step it stands in for.
    step = op_counts([("s3", "GetObject")] + [("dynamodb", "BatchWriteItem")] * 8)
    ignored = op_counts([("dynamodb", "GetItem"), ("dynamodb", "PutItem")])
    assert op_difference(step, ignored) == (
        "+1 dynamodb.GetItem, +1 dynamodb.PutItem, -8 dynamodb.BatchWriteItem, -1 s3.GetObject")


def test_rounds_are_a_b_b_a_then_reversed() -> None:
    assert [round_order(i) for i in range(3)] == [
        ["app", "bare", "bare", "app"], ["bare", "app", "app", "bare"], ["app", "bare", "bare", "app"]]
    # Each side runs twice a round, so a round's ratio is a sum over a sum.
    assert all(round_order(i).count("app") == round_order(i).count("bare") == 2 for i in range(4))
