from datetime import datetime, timezone

import pytest

from rating import deck as decks
from rating import facility, store
from rating.errors import RateCapExceeded
from rating.facility import UnknownFacility
from rating.jurisdiction import JurisdictionClass as J
from rating.jurisdiction import classify
from rating.pricing import price
from rating.tariff import PaymentType

from rating_helpers import RIVERSIDE

T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)
T1 = datetime(2024, 9, 1, tzinfo=timezone.utc)


async def test_an_imported_deck_loads_back_as_the_same_version(conn, demo_deck_text):
    await facility.add(conn, RIVERSIDE)
    done = await store.import_deck(conn, demo_deck_text, facility_id="riverside",
                                   effective_from=T0, source="tariff.csv")
    assert done.version.number == 1 and done.violations == []
    tariff = await store.load_tariff(conn, "riverside")
    (v,) = tariff.versions
    assert v == done.version
    assert decks.write(v.lines, v.surcharges) == demo_deck_text


async def test_each_import_adds_a_version_in_force_from_its_instant(conn, demo_deck_text):
    await facility.add(conn, RIVERSIDE)
    await store.import_deck(conn, demo_deck_text, facility_id="riverside", effective_from=T0)
    cheaper = demo_deck_text.replace("interstate,any,all,00:00,0,0,0.06",
                                     "interstate,any,all,00:00,0,0,0.03")
    await store.import_deck(conn, cheaper, facility_id="riverside", effective_from=T1)
    tariff = await store.load_tariff(conn, "riverside")
    assert [v.number for v in tariff.versions] == [1, 2]
    before = price(tariff, J.INTERSTATE, PaymentType.DEBIT, datetime(2024, 8, 3, 20, tzinfo=timezone.utc), 60)
    after = price(tariff, J.INTERSTATE, PaymentType.DEBIT, datetime(2024, 9, 7, 20, tzinfo=timezone.utc), 60)
    assert (before.version, before.call_micros) == (1, 60_000)
    assert (after.version, after.call_micros) == (2, 30_000)
    infos = await store.list_versions(conn, "riverside")
    assert [(i.number, i.lines, i.surcharges) for i in infos] == [(1, 7, 3), (2, 7, 3)]


async def test_a_bad_deck_writes_nothing_and_names_every_error(conn, demo_deck_text):
    await facility.add(conn, RIVERSIDE)
    bad = demo_deck_text.replace("rate,local,local,any,all,00:00,0,0,0.05",
                                 "rate,local,local,any,all,00:00,0,0,0.0x")
    bad = bad.replace("international,any,all,00:00,0,0,0.06,60,60",
                      "international,any,all,00:00,0,0,0.06,-60,60")
    with pytest.raises(decks.DeckError) as e:
        await store.import_deck(conn, bad, facility_id="riverside", effective_from=T0)
    assert [(x.line, x.column, x.value) for x in e.value.errors] == [
        (2, "price", "0.0x"), (12, "per_seconds", "-60")]
    assert await conn.fetchval("SELECT count(*) FROM tariff_version") == 0


async def test_an_import_for_an_unknown_facility_is_refused(conn, demo_deck_text):
    with pytest.raises(decks.DeckError) as e:
        await store.import_deck(conn, demo_deck_text, facility_id="nowhere", effective_from=T0)
    assert [(x.line, x.column, x.value, x.message) for x in e.value.errors] == [
        (None, "facility", "nowhere", "unknown facility")]


async def test_a_deck_above_the_facility_cap_is_refused_unless_accepted(conn, demo_deck_text):
    await facility.add(conn, RIVERSIDE)
    dear = demo_deck_text.replace("interstate,any,all,00:00,0,60,0.06",
                                  "interstate,any,all,00:00,0,60,0.21")
    with pytest.raises(RateCapExceeded) as e:
        await store.import_deck(conn, dear, facility_id="riverside", effective_from=T0)
    assert {(v.line, v.field, v.value, v.cap) for v in e.value.violations} >= {
        ("interstate", "price", "0.21/min", "0.06/min")}
    assert await conn.fetchval("SELECT count(*) FROM tariff_version") == 0
    done = await store.import_deck(conn, dear, facility_id="riverside", effective_from=T0,
                                   accept_violations=True)
    assert done.violations and done.version.number == 1


async def test_a_facility_without_a_tariff_uses_the_agency_default(conn, demo_deck_text):
    await facility.add(conn, RIVERSIDE)
    await store.import_deck(conn, demo_deck_text, facility_id=None, effective_from=T0)
    tariff = await store.load_tariff(conn, "riverside")
    assert tariff.facility_id is None and tariff.time_zone == "America/Los_Angeles"
    assert [v.number for v in tariff.versions] == [1]
    with pytest.raises(UnknownFacility):
        await store.load_tariff(conn, "nowhere")


async def test_a_rate_over_the_cap_is_named_by_its_deck_line_and_column(conn, demo_deck_text):
    await facility.add(conn, RIVERSIDE)
    dear = demo_deck_text.replace("interstate,any,all,00:00,0,60,0.06",
                                  "interstate,any,all,00:00,0,60,0.21")
    with pytest.raises(RateCapExceeded) as e:
        await store.import_deck(conn, dear, facility_id="riverside", effective_from=T0)
    (v,) = [v for v in e.value.violations if v.field == "price"]
    assert (v.row, v.column) == (9, "price")          # the second rate group's row
    assert "line 9, column price: " in str(e.value) and "[rate_cap]" in str(e.value)


async def test_an_identical_reimport_is_a_no_op_that_says_so(conn, demo_deck_text):
    await facility.add(conn, RIVERSIDE)
    first = await store.import_deck(conn, demo_deck_text, facility_id="riverside",
                                    effective_from=T0)
    again = await store.import_deck(conn, demo_deck_text.encode(), facility_id="riverside",
                                     effective_from=T1)
    assert again.unchanged and again.version == first.version
    assert await conn.fetchval("SELECT count(*) FROM tariff_version") == 1
    # Not a no-op: the same deck back in force after a different one, or taking effect earlier.
    other = demo_deck_text.replace("0.05,60,60", "0.04,60,60", 1)
    assert not (await store.import_deck(conn, other, facility_id="riverside",
                                        effective_from=T1)).unchanged
    back = await store.import_deck(conn, demo_deck_text, facility_id="riverside",
                                   effective_from=T1 + (T1 - T0))
    assert not back.unchanged and back.version.number == 3


OVERRIDE = ("kind,line,destination,payment,days,start,weight,from_second,price,per_seconds,"
            "increment,percent,parent\n"
            "rate,nyc,+1212,any,all,00:00,0,0,0.02,60,60,,\n"
            "tax,nyc-levy,+1212,any,,,,,,,,1,\n"
            "fallback,fallback,,,,,,,,,,,{parent}\n")


def _facility(fid: str):
    import dataclasses
    return dataclasses.replace(RIVERSIDE, id=fid, name=f"{fid} jail")


async def test_a_facility_overrides_one_destination_and_falls_back_to_the_agency(
        conn, demo_deck_text):
    await facility.add(conn, RIVERSIDE)
    await store.import_deck(conn, demo_deck_text, facility_id=None, effective_from=T0)
    done = await store.import_deck(conn, OVERRIDE.format(parent="agency"),
                                   facility_id="riverside", effective_from=T0)
    assert done.version.parent == "agency"
    when = datetime(2024, 8, 5, 17, tzinfo=timezone.utc)                  # Monday 10:00 in LA
    tariff = await store.load_tariff(conn, "riverside")
    nyc = price(tariff, classify("(212) 555-0123", "CA"), PaymentType.DEBIT, when, 60)
    assert (nyc.line, nyc.call_micros, [i.name for i in nyc.surcharges]) == (
        "nyc", 20_000, ["nyc-levy"])                         # its own line and its own taxes
    boston = price(tariff, classify("(617) 555-0123", "CA"), PaymentType.DEBIT, when, 60)
    assert (boston.line, boston.call_micros, [i.name for i in boston.surcharges]) == (
        "interstate", 60_000, ["federal-usf"])               # the agency's line and taxes
    # A later agency change reaches the facility from its effective instant.
    cheaper = demo_deck_text.replace("interstate,any,all,00:00,0,0,0.06",
                                     "interstate,any,all,00:00,0,0,0.03")
    await store.import_deck(conn, cheaper, facility_id=None, effective_from=T1)
    tariff = await store.load_tariff(conn, "riverside")
    later = price(tariff, classify("(617) 555-0123", "CA"), PaymentType.DEBIT,
                  datetime(2024, 9, 9, 17, tzinfo=timezone.utc), 60)
    assert later.call_micros == 30_000
    assert decks.write(tariff.versions[0].lines, tariff.versions[0].surcharges,
                       parent=tariff.versions[0].parent).splitlines()[-1] \
        == "fallback,fallback" + "," * 15 + ",agency"


async def test_a_fallback_to_no_plan_in_a_circle_or_too_deep_is_refused(conn, demo_deck_text):
    for fid in ("riverside", "a", "b", "c", "d"):
        await facility.add(conn, _facility(fid))

    async def codes(text, fid):
        with pytest.raises(decks.DeckError) as e:
            await store.import_deck(conn, text, facility_id=fid, effective_from=T0)
        return [(x.line, x.column, x.code) for x in e.value.errors]

    assert await codes(OVERRIDE.format(parent="agency"), "a") == [(4, "parent", "unknown_parent")]
    await store.import_deck(conn, demo_deck_text, facility_id=None, effective_from=T0)
    await store.import_deck(conn, OVERRIDE.format(parent="agency"), facility_id="a",
                            effective_from=T0)
    await store.import_deck(conn, OVERRIDE.format(parent="a"), facility_id="b", effective_from=T0)
    await store.import_deck(conn, OVERRIDE.format(parent="b"), facility_id="c", effective_from=T0)
    assert await codes(OVERRIDE.format(parent="c"), "d") == [(4, "parent", "fallback_too_deep")]
    assert await codes(OVERRIDE.format(parent="c"), "a") == [(4, "parent", "fallback_cycle")]
    assert await codes(OVERRIDE.format(parent="riverside"), "riverside") == [
        (4, "parent", "fallback_cycle")]
    assert await conn.fetchval("SELECT count(*) FROM tariff_version") == 4
