"""Zone cache: per username, process-local with a TTL, optionally shared through Redis."""

import uuid

import pytest
import redis
from django.conf import settings

from integrations.autotask.records import ZoneInfo
from integrations.autotask.zones import ZoneCache, default_zone_cache

from .fakes import USERNAME, ZONE_BASE, ZONE_LOOKUP_URL, invoice

ZONE = ZoneInfo(
    zone_name="Z", base_url="https://ws.example.test/ATServicesRest/", web_url=None, ci=9
)


def test_local_cache_expires_after_ttl(clock):
    cache = ZoneCache(ttl=60, clock=clock)
    cache.put(ZONE_LOOKUP_URL, "User@X", ZONE)
    assert cache.get(ZONE_LOOKUP_URL, "user@x") == ZONE
    clock.now += 61
    assert cache.get(ZONE_LOOKUP_URL, "user@x") is None


def test_redis_cache_is_shared_between_processes():
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = f"test-zone-{uuid.uuid4().hex[:8]}:"
    try:
        ZoneCache(redis_client=client, key_prefix=prefix).put(ZONE_LOOKUP_URL, "u", ZONE)
        other = ZoneCache(redis_client=client, key_prefix=prefix)
        assert other.get(ZONE_LOOKUP_URL, "u") == ZONE
        keys = [k.decode() for k in client.scan_iter(f"{prefix}*")]
        assert len(keys) == 1 and "u" not in keys[0].removeprefix(prefix)
        other.invalidate(ZONE_LOOKUP_URL, "u")
        assert ZoneCache(redis_client=client, key_prefix=prefix).get(ZONE_LOOKUP_URL, "u") is None
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


def test_clients_sharing_a_cache_look_the_zone_up_once(make_client, fake, clock):
    cache = ZoneCache(clock=clock)
    fake.api("GET", r"Invoices/1", (200, {}, {"item": invoice(1)}))
    make_client(zone_cache=cache).get_invoice(1)
    make_client(zone_cache=cache).get_invoice(1)
    assert len(fake.calls("GET", "zoneInformation")) == 1


# --- lifetimes and moves (zones.py docstring, issue 19) ----------------------------------------


@pytest.fixture
def shared_redis():
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = f"test-zone-{uuid.uuid4().hex[:8]}:"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def test_default_cache_is_shared_in_redis_for_a_day():
    assert default_zone_cache.redis is not None  # REDIS_URL is set in tests, as in production
    assert default_zone_cache.ttl == 24 * 3600
    assert ZoneCache().redis is None  # an explicit cache without Redis stays local


def test_worker_hosts_look_a_user_up_once_a_day(make_client, fake, clock, shared_redis):
    client, prefix = shared_redis
    fake.api("GET", r"Invoices/1", (200, {}, {"item": invoice(1)}))
    hosts = [ZoneCache(redis_client=client, key_prefix=prefix, clock=clock) for _ in range(3)]
    for cache in hosts:  # three hosts, each with its own process cache
        make_client(zone_cache=cache).get_invoice(1)
    assert len(fake.calls("GET", "zoneInformation")) == 1
    key = next(client.scan_iter(f"{prefix}*"))
    assert 24 * 3600 - 5 <= client.ttl(key) <= 24 * 3600
    clock.now += 3600  # an hour on, past the process copy's 10 min: Redis answers
    for cache in hosts:
        make_client(zone_cache=cache).get_invoice(1)
    assert len(fake.calls("GET", "zoneInformation")) == 1


def test_a_tenant_move_is_followed_by_a_401_and_reaches_every_host(
    make_client, fake, clock, shared_redis
):
    client, prefix = shared_redis
    old = "https://webservices2.example.test/ATServicesRest/"
    fake.zone = {"zoneName": "old", "url": old, "ci": 4242}
    host_a = ZoneCache(redis_client=client, key_prefix=prefix, clock=clock)
    host_b = ZoneCache(redis_client=client, key_prefix=prefix, clock=clock)
    fake.api("GET", r"Invoices/1", (200, {}, {"item": invoice(1)}))
    make_client(zone_cache=host_a).get_invoice(1)
    make_client(zone_cache=host_b).get_invoice(1)
    assert len(fake.calls("GET", "zoneInformation")) == 1
    # The tenant moves: the old zone answers 401, the lookup names the new one.
    fake.zone = {"zoneName": "new", "url": ZONE_BASE, "ci": 4242}
    fake.on(
        "GET",
        r"/ATServicesRest/V1\.0/Invoices/1",
        lambda s, m: (401, {}, "") if "webservices2" in s.url else (200, {}, {"item": invoice(1)}),
    )
    assert make_client(zone_cache=host_a).get_invoice(1).id == 1
    assert len(fake.calls("GET", "zoneInformation")) == 2
    assert (
        ZoneCache(redis_client=client, key_prefix=prefix).get(ZONE_LOOKUP_URL, USERNAME).base_url
        == ZONE_BASE
    )  # replaced for everyone, not just deleted
    clock.now += 601  # host b's process copy (the old zone) runs out; Redis has the new one
    sent = len(fake.sent)
    assert make_client(zone_cache=host_b).get_invoice(1).id == 1
    assert [s.url.split("/")[2] for s in fake.sent[sent:]] == ["webservices15.example.test"]
