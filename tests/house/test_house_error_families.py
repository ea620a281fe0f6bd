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
import ops
import rating
import switch
import web
from families.errors import FamilyError
from ivr.errors import IvrError
from ivr.flows.machine import IllegalMove
from ledger.errors import EngineError, LedgerError
from ops.errors import OpsError
from rating.errors import RatingError
from switch.errors import SwitchError
from web.errors import WebError
from web.problems import ApiProblem

FAMILIES = {ledger: LedgerError, rating: RatingError, ivr: IvrError, families: FamilyError,
            switch: SwitchError, web: WebError, ops: OpsError}


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
    # ledger.errors.EngineError is the shape every family shares, not a family of its own.
    strays = [c.__qualname__ for c in found
              if not issubclass(c, (family, IllegalMove, ApiProblem)) and c is not EngineError]
    assert not strays, f"{package.__name__} errors outside {family.__name__}: {strays}"


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
    from families.errors import FamilyLedgerRefused
    from families.history import month_range
    from families.settings import parse_amount
    yield ((lambda: parse_amount("1.234", field="deposit")), "'1.234' has more than 2 decimals",
           "deposit", "1.234", "deposit: '1.234' has more than 2 decimals")
    yield ((lambda: month_range("2026-13")), None, "month", "2026-13", "YYYY-MM")
    yield (_raises(FamilyLedgerRefused("p-1", ["EXCEEDS_CREDITS"])), None, "payment",
           ["EXCEEDS_CREDITS"], "the ledger refused payment p-1: EXCEEDS_CREDITS")


def test_the_families_parsers_refusals_are_still_value_errors_for_their_callers():
    from families.history import month_range
    from families.settings import parse_amount
    for act in (lambda: parse_amount("x"), lambda: month_range("march")):
        with pytest.raises(ValueError):
            act()


def _switch_cases():
    from switch.rules import numbers, schedule
    from switch.wire import protocol as wire
    yield ((lambda: numbers.to_e164("not a number")), None, None, None, "not a number")
    yield ((lambda: schedule.parse_window("25:00-26:00")), None, None, None, "25:00")
    yield (_raises(wire.UnknownCall("call c-1 is unknown", where="c-1")), "unknown_call", "c-1",
           None, "call c-1 is unknown")
    from switch.processes.supervisor import UnknownWorker
    from switch.settings import SettingsError, WorkerProcessSettings
    yield (_raises(UnknownWorker("w-7")), "unknown worker", "worker", "w-7", "unknown worker 'w-7'")
    yield ((lambda: WorkerProcessSettings.from_json("[1]")), None, None, None, "must be a JSON object")
    assert issubclass(SettingsError, ValueError)


def _secret_cases(tmp_path):
    from switch.wire.amp_auth import SecretFileError, node_secret
    path = tmp_path / "secret"
    path.write_text("ab" * 4 + "\n")
    path.chmod(0o600)
    with pytest.raises(SecretFileError) as raised:
        node_secret(path)
    return raised.value


def _ops_cases():
    from ops.config import ConfigError
    from ops.seed import SeedError
    yield (_raises(ConfigError("ics.toml: [ledger] currency: not a currency")), None, None, None,
           "currency")
    yield (_raises(SeedError("directory.toml: inmate i-1: pin missing")), None, None, None,
           "pin missing")


CASES = [(family, *case) for family, cases in
         ((LedgerError, _ledger_cases()), (RatingError, _rating_cases()),
          (IvrError, _ivr_cases()), (FamilyError, _families_cases()),
          (SwitchError, _switch_cases()), (OpsError, _ops_cases())) for case in cases]


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


def test_an_unusable_node_secret_says_which_file_and_why(tmp_path):
    e = _secret_cases(tmp_path)
    assert isinstance(e, SwitchError)
    assert e.what == "secret too short" and e.where == str(tmp_path / "secret") and e.value == 4


@pytest.mark.parametrize("family", [LedgerError, RatingError, IvrError, SwitchError, WebError],
                         ids=lambda f: f.__name__)
def test_every_family_shares_one_shape(family):
    assert issubclass(family, EngineError)
    e = family("a sentence", where="field", value=3)
    assert (str(e), e.what, e.where, e.value) == ("a sentence", "a sentence", "field", 3)
