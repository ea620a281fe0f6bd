"""The portal without a browser: which operations it may reach, the words every value it shows
needs, escaping, and the notices a redirect may name."""
from __future__ import annotations

import typing
import uuid

import pytest

from web.endpoints.family_contacts import ContactRequestOut
from web.endpoints.family_money import NumberOut, PaymentOut
from web.pages.messages import CATALOGUE, translator
from web.pages.site import Page
from web.portal import gateway
from web.portal.app import CARD_TOKENS, NOTICES


@pytest.mark.parametrize("operation_id", ["refund_account", "adjust_account",
                                          "prove_family_number", "agent_fund_number",
                                          "decide_family_request", "list_cdrs"])
def test_the_portal_cannot_reach_an_operators_operation(operation_id):
    with pytest.raises(LookupError):
        gateway.family_operation(operation_id)


@pytest.mark.parametrize("operation_id", ["family_refund", "family_fund_number", "family_login",
                                          "family_history", "family_block"])
def test_the_portal_reaches_the_holders_own_operations(operation_id):
    assert gateway.family_operation(operation_id).operation_id == operation_id


async def test_a_holders_operation_is_refused_to_the_public_before_it_runs():
    from web.family_auth import PublicPrincipal
    with pytest.raises(LookupError):
        await gateway.run(None, PublicPrincipal(), "family_refund", path={"number": "+1"})


def _values(model, field: str) -> tuple[str, ...]:
    hint = typing.get_type_hints(model)[field]
    return tuple(a for a in typing.get_args(hint) if isinstance(a, str))


@pytest.mark.parametrize("prefix, values", [
    ("portal.state.", _values(NumberOut, "state")),
    ("portal.request.", _values(ContactRequestOut, "state")),
    ("portal.payment.state.", _values(PaymentOut, "state")),
    ("portal.history.kind.", ("deposit", "fee", "refund")),
    ("portal.card.", CARD_TOKENS),
])
def test_every_state_the_portal_shows_has_words_in_both_languages(prefix, values):
    assert values
    for lang in ("en", "es"):
        missing = [v for v in values if prefix + v not in CATALOGUE[lang]]
        assert not missing, (lang, missing)


def test_every_notice_a_redirect_may_name_is_catalogued():
    for key in NOTICES.values():
        assert key in CATALOGUE["en"] and key in CATALOGUE["es"]


class _Session:
    csrf_token = "tok"


def _page(lang: str) -> Page:
    return Page(request=None, method="GET", params={}, query={}, form={}, lang=lang,
                t=translator(lang), session=_Session(), base="/portal")


@pytest.mark.parametrize("lang, word", [("en", "My numbers"), ("es", "Mis números")])
def test_markup_in_a_name_is_escaped_and_the_page_has_its_language(lang, word):
    evil = '<script>alert(1)</script>'
    body = _page(lang).render(
        "portal/home.html", holder=object(), problem=None, failure=None, app_name_key=
        "portal.app.name", field_label=lambda f: f, number="",
        me={"email": "a@b.example"}, numbers=[],
        requests=[{"inmate_name": evil, "inmate": "10001", "facility": "riverside",
                   "number": "+19515550101", "state": "requested", "id": uuid.uuid4()}],
    ).body.decode()
    assert f'<html lang="{lang}">' in body and word in body
    assert "<script" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert 'name="csrf" value="tok"' in body                # every POST form carries it


def test_a_ledger_refusing_a_family_payment_is_a_503_not_the_holders_422():
    from families.errors import FamilyLedgerRefused, Invalid
    from web import problems
    from web.endpoints.family_common import family_problems
    with pytest.raises(problems.ApiProblem) as raised:
        with family_problems():
            raise FamilyLedgerRefused("p-1", ["EXCEEDS_CREDITS"])
    assert raised.value.status == 503 and "EXCEEDS_CREDITS" not in raised.value.problem().detail
    with pytest.raises(problems.ApiProblem) as raised:      # the holder's own bad input stays 422
        with family_problems():
            raise Invalid("amount", "must be greater than 0")
    assert raised.value.status == 422
