"""Zone cache: per username, process-local with a TTL, optionally shared through Redis."""

import uuid

import redis
from django.conf import settings

from integrations.autotask.records import ZoneInfo
from integrations.autotask.zones import ZoneCache

from .fakes import ZONE_LOOKUP_URL, invoice

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
