"""Thread limit and the hourly threshold (API.md §4)."""

from concurrent.futures import ThreadPoolExecutor

from tests.sandbox.conftest import AutotaskHttp

ITGENATR005 = (
    "Thread Threshold Exceeded: The Autotask API thread threshold of 3 threads has been "
    "exceeded. Itgenatr005"
)


def _concurrent(server, path, n=4):
    clients = [AutotaskHttp(server, server.db) for _ in range(n)]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda c: c.get(path), clients))


def test_fourth_concurrent_request_on_an_endpoint_is_refused(make_sandbox):
    server = make_sandbox(invoices=5, latency_ms=300)
    responses = _concurrent(server, "Invoices/query/count?search=%7B%22filter%22%3A%5B%5D%7D")
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 500]
    refused = next(r for r in responses if r.status_code == 500)
    assert refused.json() == {"errors": [ITGENATR005]}


def test_thread_limit_is_per_endpoint_and_zone_lookup_is_exempt(make_sandbox):
    server = make_sandbox(invoices=5, latency_ms=300)
    clients = [AutotaskHttp(server, server.db) for _ in range(6)]
    paths = ["Invoices/entityInformation"] * 3 + ["Companies/entityInformation"] * 3
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda cp: cp[0].get(cp[1]), zip(clients, paths, strict=True)))
    assert [r.status_code for r in responses] == [200] * 6


def test_thread_limit_status_switch(make_sandbox):
    server = make_sandbox(invoices=5, latency_ms=300)
    server.db.set_switches(thread_limit_status=429)
    statuses = sorted(r.status_code for r in _concurrent(server, "Invoices/entityInformation"))
    assert statuses == [200, 200, 200, 429]


def test_threshold_latency_tiers_and_refusal(at):
    db = at.db
    db.set_switches(
        threshold=8, usage_delay_50=0.05, usage_delay_75=0.2, threshold_retry_after=True
    )
    for n in range(1, 9):
        response = at.get("ThresholdInformation")
        assert response.json() == {
            "externalRequestThreshold": 8,
            "requestThresholdTimeframe": 60,
            "currentTimeframeRequestCount": n,
        }
    durations = [e["duration_ms"] for e in db.requests(entity="ThresholdInformation")]
    assert all(d < 40 for d in durations[:4])  # up to 50 %: no delay
    assert all(50 <= d < 190 for d in durations[4:6])  # 5/8, 6/8: the 50 % tier
    assert all(d >= 200 for d in durations[6:8])  # 7/8, 8/8: the 75 % tier
    refused = at.get("Invoices/entityInformation")
    assert refused.status_code == 429
    assert "threshold" in refused.json()["errors"][0]
    assert int(refused.headers["Retry-After"]) > 0
    assert db.requests_count() == 8


def test_rolling_hour_uses_the_database_clock(at):
    now = [1_000_000.0]
    db = at.db
    db.clock = lambda: now[0]
    db.set_switches(threshold=3, usage_delay_50=0, usage_delay_75=0)
    assert [at.get("ThresholdInformation").status_code for _ in range(4)] == [200, 200, 200, 429]
    now[0] += 3599
    assert at.get("ThresholdInformation").status_code == 429
    now[0] += 2
    response = at.get("ThresholdInformation")
    assert response.status_code == 200
    assert response.json()["currentTimeframeRequestCount"] == 1
