"""Jurisdiction with real numbering, seen from a California facility (Riverside, 951)."""
import re

import phonenumbers
import pytest
from phonenumbers import geocoder

from rating.jurisdiction import JurisdictionClass as J
from rating.jurisdiction import _npa_states, classify, state_of_npa

EXCHANGES = ("951-555", "951-955")


@pytest.mark.parametrize("dialled,kind,state", [
    ("(951) 555-0123", J.LOCAL, "CA"),
    ("951-955-0199", J.LOCAL, "CA"),
    ("+1 951 684 0123", J.INTRASTATE, "CA"),            # same area code, not a local exchange
    ("916-555-0123", J.INTRASTATE, "CA"),
    ("(212) 555-0123", J.INTERSTATE, "NY"),             # a New York number is interstate
    ("1-202-555-0123", J.INTERSTATE, "DC"),
    ("+1 787 555 0123", J.INTERSTATE, "PR"),            # Puerto Rico is a US jurisdiction
    ("+44 20 7946 0018", J.INTERNATIONAL, None),
    ("011 52 55 1234 5678", J.INTERNATIONAL, None),
    ("+1 416 555 0123", J.INTERNATIONAL, None),         # Toronto: NANP, but another country
    ("+1 876 555 0123", J.INTERNATIONAL, None),         # Jamaica
    ("1-900-555-0199", J.PREMIUM, None),
    ("800-555-0100", J.TOLL_FREE, None),
    ("+1 888 555 0100", J.TOLL_FREE, None),
    ("911", J.EMERGENCY, None),
    ("112", J.EMERGENCY, None),
    ("411", J.N11, None),
    ("611", J.N11, None),
    ("555-0123", J.INVALID, None),
    ("not a number", J.INVALID, None),
    ("+1 500 555 0123", J.UNKNOWN, None),               # personal-communications, no state
])
def test_numbers_are_classified_from_a_california_facility(dialled, kind, state):
    j = classify(dialled, "CA", EXCHANGES)
    assert (j.kind, j.state) == (kind, state)


def test_priced_classes_carry_the_e164_number():
    assert classify("(212) 555-0123", "CA").e164 == "+12125550123"
    assert classify("911", "CA").e164 is None


def test_the_same_number_is_intrastate_from_its_own_state():
    assert classify("(212) 555-0123", "NY").kind is J.INTRASTATE
    assert classify("(212) 555-0123", "NY", ("212-555",)).kind is J.LOCAL


def test_the_npa_table_agrees_with_the_numbering_plan_on_every_area_code_it_lists():
    """Every listed NPA rings in the US (per phonenumbers' metadata), and where the geocoder names a
    state for the area code, it is the same state."""
    names = {"California": "CA", "New York": "NY", "Texas": "TX", "Florida": "FL",
             "Washington State": "WA", "Washington D.C.": "DC", "New Jersey": "NJ",
             "Illinois": "IL", "Ohio": "OH", "Pennsylvania": "PA", "Georgia": "GA"}
    checked = 0
    for npa, state in _npa_states().items():
        region = phonenumbers.region_code_for_country_code(1)
        n = phonenumbers.parse(f"+1{npa}2345678", region)
        assert phonenumbers.region_code_for_number(n) in ("US", "PR", "VI", "GU", "AS", "MP"), npa
        where = geocoder.description_for_number(n, "en")
        if where in names:
            assert names[where] == state, (npa, where)
            checked += 1
        elif re.search(r", [A-Z]{2}$", where):
            assert where.endswith(", " + state), (npa, where)
            checked += 1
    assert len(_npa_states()) > 350 and checked > 150
    assert state_of_npa("416") is None and state_of_npa("212") == "NY"
