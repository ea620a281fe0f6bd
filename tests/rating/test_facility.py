import asyncpg
import pytest

from rating import facility
from rating.facility import Facility, FacilityError, UnknownFacility

SAC = Facility(id="sac-main", name="Sacramento Main Jail", state="CA",
               time_zone="America/Los_Angeles", adp=2100, kind="jail", profile="fcc-2024",
               local_exchanges=("916-555", "(916) 874"))


def test_local_exchanges_are_kept_as_npa_nxx():
    assert SAC.local_exchanges == ("916-555", "916-874")


@pytest.mark.parametrize("field,value", [("id", "has space"), ("state", "Calif"),
                                         ("time_zone", "Mars/Olympus"), ("adp", -1),
                                         ("kind", "camp"), ("local_exchanges", ("916",))])
def test_a_bad_field_is_refused_naming_the_field(field, value):
    args = dict(id="x", name="X", state="CA", time_zone="UTC", adp=1, kind="jail",
                profile="fcc-2024")
    args[field] = value
    with pytest.raises(FacilityError) as e:
        Facility(**args)
    assert e.value.field == field


async def test_a_facility_is_stored_and_loaded_back(conn):
    await facility.add(conn, SAC)
    assert await facility.load(conn, "sac-main") == SAC
    assert await facility.load_all(conn) == [SAC]


async def test_a_duplicate_facility_is_refused_and_an_unknown_one_is_named(conn):
    await facility.add(conn, SAC)
    with pytest.raises(FacilityError, match="already exists"):
        await facility.add(conn, SAC)
    with pytest.raises(UnknownFacility, match="nowhere"):
        await facility.load(conn, "nowhere")


async def test_the_table_refuses_malformed_exchanges_even_from_raw_sql(conn):
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("INSERT INTO facility (id, name, state, time_zone, adp, kind, profile,"
                           " local_exchanges) VALUES ('a', 'A', 'CA', 'UTC', 1, 'jail', 'p',"
                           " '{916555}')")
