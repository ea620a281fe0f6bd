"""Error families, as asyncpg has them: each package raises its own family, and every member
carries what went wrong, where, and the offending value, with a message written for people.

The walk below finds every exception class a package defines; a new one outside its family
fails here. Machines' illegal moves are one family across packages (ivr.flows.machine)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import families
import ivr
import ledger
import rating
import web
from families.errors import FamilyError
from ivr.errors import IvrError
from ivr.flows.machine import IllegalMove
from ledger.errors import LedgerError
from rating.errors import RatingError
from switch.errors import SwitchError
from web.errors import WebError
from web.problems import ApiProblem

FAMILIES = {ledger: LedgerError, rating: RatingError, ivr: IvrError, families: FamilyError,
            web: WebError}


def _raises(e):
    def act():
        raise e
    return act


def _exceptions(package):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for name, cls in vars(module).items():
            if (inspect.isclass(cls) and issubclass(cls, BaseException)
                    and cls.__module__ == module.__name__ and not name.startswith("_")):
                yield cls


@pytest.mark.parametrize("package", list(FAMILIES), ids=lambda p: p.__name__)
def test_every_error_a_package_defines_belongs_to_its_family(package):
    family = FAMILIES[package]
    found = list(_exceptions(package))
    assert family in found
    # web.problems.ApiProblem is the HTTP rendering of a refusal, not a refusal of its own.
    strays = [c.__qualname__ for c in found
              if not issubclass(c, (family, IllegalMove, ApiProblem))]
    assert not strays, f"{package.__name__} errors outside {family.__name__}: {strays}"


# The switch's domain modules; its process management (supervisor, worker link, demo) is next.
SWITCH_DOMAIN = ("switch.rules.policy", "switch.rules.pin", "switch.rules.schedule", "switch.rules.numbers",
                 "switch.rules.kiosk_source", "switch.provisioning.directory", "switch.wire.protocol", "switch.errors")


def test_every_error_of_the_switchs_domain_modules_is_a_switch_error():
    found = [cls for name in SWITCH_DOMAIN for cls in vars(importlib.import_module(name)).values()
             if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == name]
    assert SwitchError in found
    strays = [c.__qualname__ for c in found if not issubclass(c, SwitchError)]
    assert not strays, f"switch errors outside SwitchError: {strays}"


def _ledger_cases():
    from ledger.jsonl import MalformedLine
    from ledger.money import parse_amount
    from ledger.transfers import Transfer

    def transfer():
        Transfer(id="not-a-uuid", kind=1)  # type: ignore[arg-type]

    yield transfer, "must be a UUID", "transfer id", "not-a-uuid", "transfer id: must be a UUID"
    yield (lambda: parse_amount("1.2345678")), None, "amount", "1.2345678", "'1.2345678'"
    yield (_raises(MalformedLine(3, "amount", "must be an integer")),
           "must be an integer", "line 3: field amount", None, "line 3: field amount: must be")


def _rating_cases():
    from rating.errors import NoTariffInForce, UnauthorizedDestination
    from rating.facility import UnknownFacility
    yield (_raises(UnauthorizedDestination("+33123456789", "prepaid", "2026-01-01T00:00Z")),
           "no tariff line covers this destination", "paid prepaid at 2026-01-01T00:00Z",
           "+33123456789", "unauthorized destination: no tariff line covers +33123456789")
    yield (_raises(NoTariffInForce("fac-1", "2026-01-01")), "no tariff in force", "fac-1",
           "2026-01-01", "no tariff of fac-1 is in force at 2026-01-01")
    yield (_raises(UnknownFacility("fac-9")), "unknown facility", "facility", "fac-9",
           "unknown facility 'fac-9'")


def _ivr_cases():
    from ivr import catalog, say
    yield ((lambda: say.say_number(-1, "en")), None, None, -1, "cannot say")
    yield ((lambda: say.say_money(-5, "en")), None, None, -5, "cannot say amount -5")
    yield ((lambda: catalog.text("no_such_prompt", "en")), "no such prompt", "language en",
           "no_such_prompt", "no prompt 'no_such_prompt' in language 'en'")
    yield ((lambda: catalog.text("goodbye", "fr")), "no prompts in this language", "language",
           "fr", "no prompts in language 'fr'")


def _families_cases():
    from families.fees import FeeError
    from families.passwords import check_strength
    from families.providers import verify_webhook
    yield ((lambda: check_strength("short")), None, "password", None, "at least")
    yield (_raises(FeeError("a third-party payment needs the third party's own fee (>= 0)",
                            "third_party_fee")), None, "third_party_fee", None, "third party")
    yield ((lambda: verify_webhook(b"secret", b"{}", None, now=None, window_seconds=300)),
           None, "webhook", None,
           "header")


def _switch_cases():
    from switch.rules import numbers, schedule
    from switch.wire import protocol as wire
    yield ((lambda: numbers.to_e164("not a number")), None, None, None, "not a number")
    yield ((lambda: schedule.parse_window("25:00-26:00")), None, None, None, "25:00")
    yield (_raises(wire.UnknownCall("call c-1 is unknown", where="c-1")), "unknown_call", "c-1",
           None, "call c-1 is unknown")


CASES = [(family, *case) for family, cases in
         ((LedgerError, _ledger_cases()), (RatingError, _rating_cases()),
          (IvrError, _ivr_cases()), (FamilyError, _families_cases()),
          (SwitchError, _switch_cases())) for case in cases]


@pytest.mark.parametrize("family,act,what,where,value,text", CASES)
def test_an_error_says_what_where_and_the_value_and_reads_as_a_sentence(family, act, what,
                                                                        where, value, text):
    with pytest.raises(family) as raised:
        act()
    e = raised.value
    assert e.what and isinstance(e.what, str)
    if what is not None:
        assert e.what == what
    if where is not None:
        assert e.where == where
    if value is not None:
        assert e.value == value
    assert text in str(e) and "Traceback" not in str(e) and "micros" not in str(e)
