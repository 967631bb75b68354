from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from integrations.autotask import Q, Query


def test_example_body_from_api_md_keeps_json_booleans_and_nesting():
    body = Query(
        filters=[
            Q.gte("createDateTime", datetime(2024, 5, 1, tzinfo=UTC)),
            Q.or_(Q.eq("isVoided", False), Q.exist("paidDate")),
            Q.gt("Number of Employees", 0, udf=True),
        ],
        include_fields=["id", "invoiceNumber", "companyID"],
        max_records=500,
    ).to_body()
    assert body == {
        "MaxRecords": 500,
        "IncludeFields": ["id", "invoiceNumber", "companyID"],
        "filter": [
            {"op": "gte", "field": "createDateTime", "value": "2024-05-01T00:00:00.000Z"},
            {
                "op": "or",
                "items": [
                    {"op": "eq", "field": "isVoided", "value": False},
                    {"op": "exist", "field": "paidDate"},
                ],
            },
            {"op": "gt", "field": "Number of Employees", "value": 0, "udf": True},
        ],
    }


def test_empty_filter_becomes_catch_all():
    assert Query().to_body() == {
        "MaxRecords": 500,
        "filter": [{"op": "gte", "field": "id", "value": 0}],
    }


def test_datetimes_are_converted_to_utc_with_milliseconds_and_dates_stay_dates():
    plus2 = timezone(timedelta(hours=2))
    moment = datetime(2025, 1, 1, 1, 30, 5, 123456, tzinfo=plus2)
    assert Q.lt("x", moment).to_json()["value"] == "2024-12-31T23:30:05.123Z"
    assert Q.eq("d", date(2025, 10, 1)).to_json()["value"] == "2025-10-01"
    with pytest.raises(ValueError, match="naive"):
        Q.eq("x", datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (Q.noteq("a", 1), {"op": "noteq", "field": "a", "value": 1}),
        (Q.lte("a", Decimal("2.50")), {"op": "lte", "field": "a", "value": 2.5}),
        (Q.begins_with("a", "x"), {"op": "beginsWith", "field": "a", "value": "x"}),
        (Q.ends_with("a", "x"), {"op": "endsWith", "field": "a", "value": "x"}),
        (Q.contains("a", "x"), {"op": "contains", "field": "a", "value": "x"}),
        (Q.not_exist("a"), {"op": "notExist", "field": "a"}),
        (Q.in_("id", [1, 2]), {"op": "in", "field": "id", "value": [1, 2]}),
        (Q.not_in("id", [3]), {"op": "notIn", "field": "id", "value": [3]}),
        (
            Q.and_(Q.eq("a", True), Q.lt("b", 3)),
            {
                "op": "and",
                "items": [
                    {"op": "eq", "field": "a", "value": True},
                    {"op": "lt", "field": "b", "value": 3},
                ],
            },
        ),
    ],
)
def test_operators_serialise(condition, expected):
    assert condition.to_json() == expected


def test_limits_are_enforced_when_building():
    with pytest.raises(ValueError):
        Query(max_records=501)
    with pytest.raises(ValueError):
        Query(max_records=0)
    with pytest.raises(ValueError, match="500"):
        Q.in_("id", range(501))
    with pytest.raises(ValueError, match="one user-defined field"):
        Query(filters=[Q.eq("A", "1", udf=True), Q.or_(Q.eq("B", "2", udf=True))])
    with pytest.raises(ValueError, match="exist"):
        Q.eq("paidDate", None)


def test_required_fields_are_added_to_include_fields_only_when_set():
    assert Query().with_required_fields(["id"]).include_fields == ()
    q = Query(include_fields=["invoiceNumber"]).with_required_fields(["id", "companyID"])
    assert q.include_fields == ("invoiceNumber", "id", "companyID")
    q = Query(include_fields=["ID", "companyid"]).with_required_fields(["id", "companyID"])
    assert q.include_fields == ("ID", "companyid")
