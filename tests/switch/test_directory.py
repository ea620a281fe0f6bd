import pytest

import ledger
from switch.provisioning import directory as d
from ops.seed import DEMO_DIR, SeedError, load_directory


async def test_demo_directory_loads_and_loading_again_changes_nothing(conn):
    counts = await load_directory(conn, DEMO_DIR / "directory.toml")
    assert counts["facility"] == "riverside" and counts["inmate"] == 2
    before = await conn.fetchval("SELECT count(*) FROM ledger_transfer")
    mom = await ledger.balance(conn, d.phone_account_id("+19515550101"))
    await load_directory(conn, DEMO_DIR / "directory.toml")
    assert await conn.fetchval("SELECT count(*) FROM ledger_transfer") == before
    assert (await ledger.balance(conn, d.phone_account_id("+19515550101"))) == mom
    assert mom.available == 20_000_000
    assert (await ledger.balance(conn, d.inmate_account_id("10001"))).available == 5_000_000
    assert (await ledger.verify(conn)).ok


async def test_a_bad_entry_loads_nothing_and_names_the_entry(conn, tmp_path):
    text = (DEMO_DIR / "directory.toml").read_text().replace('number = "+12125550123"',
                                                             'number = "12"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(SeedError, match=r"\[\[contact\]\] #2 \(12\).*not a"):
        await load_directory(conn, bad)
    assert await conn.fetchval("SELECT count(*) FROM facility") == 0
    assert await conn.fetchval("SELECT count(*) FROM ledger_transfer") == 0


async def test_funding_is_idempotent_on_its_reference_and_a_reused_reference_is_refused(conn):
    await load_directory(conn, DEMO_DIR / "directory.toml")
    r1 = await d.fund_phone_account(conn, "+1 951 555 0101", 5_000_000, "pay-77")
    r2 = await d.fund_phone_account(conn, "+19515550101", 5_000_000, "pay-77")
    assert (r1.result, r2.result) == ("ok", "exists") and r1.transfer_id == r2.transfer_id
    assert (await ledger.balance(conn, d.phone_account_id("+19515550101"))).available == 25_000_000
    with pytest.raises(d.Invalid, match="already used"):
        await d.fund_phone_account(conn, "+19515550101", 6_000_000, "pay-77")
    with pytest.raises(d.NotFound):
        await d.fund_phone_account(conn, "+19515550999", 1, "pay-78")
    with pytest.raises(d.Invalid, match="amount"):
        await d.fund_phone_account(conn, "+19515550101", 0, "pay-79")


@pytest.mark.parametrize("call,message", [
    (lambda c: d.add_inmate(c, "12a", "X", "riverside", "1234"), "3-15 digits"),
    (lambda c: d.add_inmate(c, "20001", "X", "riverside", "12"), "4 digits"),
    (lambda c: d.add_inmate(c, "20001", "X", "nowhere", "1234"), "facility 'nowhere'"),
    (lambda c: d.add_contact(c, "10001", "hello"), "number"),
    (lambda c: d.add_contact(c, "99999", "+12125550100"), "inmate '99999'"),
    (lambda c: d.add_block(c, "+1212", scope="facility", prefix=True), "needs --facility"),
    (lambda c: d.add_window(c, "riverside", "someday 08:00-09:00"), "unknown day"),
    (lambda c: d.add_route(c, "44", "sip:{e164}@h"), "prefix"),
    (lambda c: d.add_route(c, "+44", "http://x"), "sip: URI"),
    (lambda c: d.add_kiosk(c, "k 1", "riverside"), "kiosk id"),
])
async def test_bad_provisioning_input_is_refused_with_the_field_named(conn, call, message):
    await load_directory(conn, DEMO_DIR / "directory.toml")
    with pytest.raises((d.Invalid, d.NotFound), match=message):
        await call(conn)


async def test_contact_list_limit_is_enforced(conn):
    await load_directory(conn, DEMO_DIR / "directory.toml")
    await conn.execute("UPDATE inmate SET contacts_max = 4 WHERE id = '10001'")
    with pytest.raises(d.Invalid, match="limit 4"):
        await d.add_contact(conn, "10001", "+12125550111", status="approved")
    await d.set_contact_status(conn, "10001", "+19515550177", "removed")
    await d.add_contact(conn, "10001", "+12125550111", status="approved")


async def test_a_recorded_name_is_made_telephone_ready_and_given_to_the_called_party(conn, tmp_path):
    import numpy as np
    from ivr import audio
    await load_directory(conn, DEMO_DIR / "directory.toml")
    t = np.arange(16_000 * 2) / 16_000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    src = tmp_path / "john.wav"
    audio.write_wav(src, audio.Clip(16_000, tone))
    stored = await d.record_name(conn, "10001", src, tmp_path / "data")
    clip = audio.read_wav(stored)
    assert clip.rate == 8000 and 1.5 < len(clip.samples) / 8000 <= 2.0
    assert await conn.fetchval("SELECT name_wav FROM inmate WHERE id = '10001'") == str(stored)
    silent = tmp_path / "silent.wav"
    audio.write_wav(silent, audio.Clip(8000, np.zeros(8000, np.int16)))
    with pytest.raises(d.Invalid, match="no speech"):
        await d.record_name(conn, "10001", silent, tmp_path / "data")
    long = tmp_path / "long.wav"
    audio.write_wav(long, audio.Clip(8000, (np.sin(np.arange(8000 * 9)) * 8000).astype(np.int16)))
    with pytest.raises(d.Invalid, match="at most 5 s"):
        await d.record_name(conn, "10001", long, tmp_path / "data")
    notwav = tmp_path / "x.wav"
    notwav.write_bytes(b"not a wav")
    with pytest.raises(d.Invalid, match="x.wav"):
        await d.record_name(conn, "10001", notwav, tmp_path / "data")
    with pytest.raises(d.NotFound):
        await d.record_name(conn, "99999", src, tmp_path / "data")


async def test_a_directory_loaded_first_makes_the_house_accounts_with_the_configured_shards(conn):
    await load_directory(conn, DEMO_DIR / "directory.toml", shards=3)
    rows = dict(await conn.fetch("SELECT id, shards FROM ledger_account WHERE id IN "
                                 "('revenue', 'tax_payable')"))
    assert rows == {"revenue": 3, "tax_payable": 3}


async def test_deposit_references_stored_before_normalization_are_normalized_never_merged(conn):
    """Migration 0006_normalize_deposit_refs on deposits stored as they were typed."""
    import uuid
    from pathlib import Path
    await load_directory(conn, DEMO_DIR / "directory.toml")
    mom = d.phone_account_id("+19515550101")
    before = (await ledger.balance(conn, mom)).available
    stored = [("pay-123 ", 1_000_000, 1), ("abc-1", 2_000_000, 2), ("ABC-1 ", 3_000_000, 3),
              ("xyz", 4_000_000, 4), ("XYZ", 5_000_000, 5), ("  ", 6_000_000, 6),
              ("pay-9", 7_000_000, 7)]
    for ref, amount, minute in stored:      # deposits made before references were normalized
        tid = uuid.uuid5(d.FUNDING_NAMESPACE, ref)
        [r] = await ledger.submit(conn, [ledger.Transfer(
            tid, ledger.TransferKind.SINGLE, debit=d.FUNDING_SOURCE, credit=mom, amount=amount,
            code=ledger.TransferCode.DEPOSIT, ref=ref)])
        assert r.succeeded
        await conn.execute(
            "INSERT INTO funding_credit (ref, account, amount, transfer_id, created_at) "
            "VALUES ($1, $2, $3, $4, '2026-01-01'::timestamptz + $5 * interval '1 minute')",
            ref, mom, amount, tid, minute)
    await conn.execute("INSERT INTO refund (funding_ref, account, amount, transfer_id, "
                       "requested_by) VALUES ('pay-9', $1, 1000, $2, 'ops')", mom, uuid.uuid4())
    funded = (await ledger.balance(conn, mom)).available
    sql = (Path(d.__file__).parents[1] / "migrations" / "0006_normalize_deposit_refs.sql").read_text()
    await conn.execute("DROP TABLE funding_ref_collision")      # as before the migration
    async with conn.transaction():
        await conn.execute(sql)
    refs = {r["ref"] for r in await conn.fetch("SELECT ref FROM funding_credit WHERE account = $1 "
                                               "AND NOT ref LIKE '%DEPOSIT%'", mom)}
    assert refs == {"PAY-123", "ABC-1", "ABC-1 ", "XYZ", "xyz", "  ", "PAY-9"}
    collisions = {(r["ref"], r["normalized"], r["kept_ref"], r["amount"]) for r in
                  await conn.fetch("SELECT * FROM funding_ref_collision")}
    assert collisions == {("ABC-1 ", "ABC-1", "abc-1", 3_000_000),
                          ("xyz", "XYZ", "XYZ", 4_000_000)}
    assert await conn.fetchval("SELECT funding_ref FROM refund") == "PAY-9"
    # The same payment quoted again, in any case or blanks, funds nothing more.
    again = await d.fund_phone_account(conn, "+19515550101", 1_000_000, " Pay-123")
    assert (again.result, again.transfer_id) == ("exists",
                                                 uuid.uuid5(d.FUNDING_NAMESPACE, "pay-123 "))
    with pytest.raises(d.Invalid, match="already used"):
        await d.fund_phone_account(conn, "+19515550101", 9_000_000, "abc-1")
    assert (await ledger.balance(conn, mom)).available == funded > before
    assert (await ledger.verify(conn)).ok
