"""Webhook building blocks: backoff, the URL policy, signing, the m0003 migration."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from gateway.db.database import Database
from gateway.db.migrate import migrate
from gateway.db.migrations import m0003_webhooks
from gateway.webhooks import urlpolicy
from gateway.webhooks.delivery import MAX_BACKOFF_S, backoff_ms
from gateway.webhooks.errors import InvalidWebhookUrl
from gateway.webhooks.signing import mask_secret, new_secret, signed_headers


def test_backoff_doubles_from_the_initial_delay_with_bounded_jitter() -> None:
    rng = random.Random(7)
    for attempts in range(1, 11):  # 5 s x 2^9 = 43 min, under the 1 h cap
        base = 5.0 * 2 ** (attempts - 1)
        for _ in range(50):
            delay = backoff_ms(attempts, 5.0, rng) / 1000
            assert base <= delay <= base * 1.25 + 0.001
    # capped, so a receiver that comes back hears from us within the hour
    assert backoff_ms(40, 5.0) <= MAX_BACKOFF_S * 1.25 * 1000
    assert backoff_ms(10_000, 5.0) <= MAX_BACKOFF_S * 1.25 * 1000
    # jitter spreads a burst of retries
    assert len({backoff_ms(3, 5.0, rng) for _ in range(20)}) > 10


def test_default_schedule_keeps_retrying_for_more_than_24_hours() -> None:
    """SPEC §5: retries with backoff for at least 24 h (default window: 72 h)."""
    elapsed, attempts = 0.0, 0
    while elapsed < 72 * 3600:
        attempts += 1
        elapsed += backoff_ms(attempts, 5.0, random.Random(attempts)) / 1000
    assert 20 < attempts < 200


@pytest.mark.parametrize(
    ("address", "open_ok", "closed_ok"),
    [
        ("127.0.0.1", True, False),
        ("10.0.0.1", True, False),
        ("172.16.5.4", True, False),
        ("192.168.1.1", True, False),
        ("100.64.0.1", True, False),
        ("::1", True, False),
        ("fc00::1", True, False),
        ("93.184.216.34", True, True),
        ("2606:2800:220:1:248:1893:25c8:1946", True, True),
        ("169.254.169.254", False, False),
        ("169.254.0.1", False, False),
        ("fd00:ec2::254", False, False),
        ("::ffff:169.254.169.254", False, False),
        ("fe80::1", False, False),
        ("100.100.100.200", False, False),
        ("0.0.0.0", False, False),
        ("224.0.0.1", False, False),
    ],
)
def test_address_policy(address: str, open_ok: bool, closed_ok: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert (urlpolicy.refusal(ip, allow_private=True) is None) is open_ok
    assert (urlpolicy.refusal(ip, allow_private=False) is None) is closed_ok


async def test_every_resolved_address_must_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    async def two(host: str, port: int) -> list[urlpolicy.IPAddress]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("169.254.169.254")]

    monkeypatch.setattr(urlpolicy, "resolve", two)
    target = urlpolicy.parse_url("https://hooks.example.test/x")
    with pytest.raises(urlpolicy.RefusedAddress, match=r"169\.254\.169\.254"):
        await urlpolicy.vetted_address(target, allow_private=True)
    with pytest.raises(InvalidWebhookUrl):
        await urlpolicy.check_for_save("https://hooks.example.test/x", allow_private=True)


async def test_unresolvable_names_are_accepted_at_save_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def nxdomain(host: str, port: int) -> list[urlpolicy.IPAddress]:
        raise OSError("Name or service not known")

    monkeypatch.setattr(urlpolicy, "resolve", nxdomain)
    url = "https://billing.internal.example/hooks"
    assert await urlpolicy.check_for_save(url, allow_private=False) == url
    with pytest.raises(urlpolicy.RefusedAddress, match="cannot resolve"):
        await urlpolicy.vetted_address(urlpolicy.parse_url(url), allow_private=False)


def test_signing_matches_the_reference_package() -> None:
    secret, other = new_secret(), new_secret()
    body = b'{"id":"evt_1","type":"wallet.low"}'
    headers = signed_headers([secret, other], "evt_1", body)
    assert headers["webhook-id"] == "evt_1"
    assert Webhook(secret).verify(body, headers) == {"id": "evt_1", "type": "wallet.low"}
    assert Webhook(other).verify(body, headers)
    assert mask_secret(secret).startswith("whsec_****") and secret[6:-4] not in mask_secret(secret)


def test_m0003_upgrades_a_database_created_before_it(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        migrate(db)

        def downgrade() -> None:
            pdb = db.peewee
            pdb.execute_sql("DROP INDEX IF EXISTS webhook_delivery_created_ms")
            for table, column, _ in m0003_webhooks.COLUMNS:
                pdb.execute_sql(f"ALTER TABLE {table} DROP COLUMN {column}")

        def columns() -> dict[str, set[str]]:
            pdb = db.peewee
            return {
                t: {c.name for c in pdb.get_columns(t)}
                for t in ("webhook_endpoint", "webhook_delivery", "webhook_attempt")
            }

        def indexes() -> set[str]:
            return {i.name for i in db.peewee.get_indexes("webhook_delivery")}

        db.run_sync(downgrade)
        assert "window_start_ms" not in db.run_sync(columns)["webhook_delivery"]
        db.run_sync(m0003_webhooks.up, db.peewee)
        db.run_sync(m0003_webhooks.up, db.peewee)  # a rerun is a no-op
        after = db.run_sync(columns)
        for table, column, _ in m0003_webhooks.COLUMNS:
            assert column in after[table]
        assert "webhook_delivery_created_ms" in db.run_sync(indexes)
    finally:
        db.close()


@pytest.mark.parametrize("url", ["hTTpS://[", "https://[::1", "http://[zz]/x"])
def test_a_malformed_url_is_a_400_naming_url(url: str) -> None:
    """Found by schemathesis: an unclosed IPv6 bracket raised out of urlsplit (a 500)."""
    with pytest.raises(InvalidWebhookUrl) as info:
        urlpolicy.parse_url(url)
    assert info.value.param == "url"
