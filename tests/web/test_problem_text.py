"""Refusals in Spanish: every code the API can give has Spanish words, every problem type a
Spanish title, and a refusal is said in Spanish from its code and params, never in English."""
from __future__ import annotations

import string

import pytest
from pydantic import BaseModel, StringConstraints, ValidationError
from typing_extensions import Annotated

from families.errors import Refused
from web import problems
from web.endpoints.family_common import family_problems
from web.pages.problem_text import PROBLEM_ES, TITLE_ES, localized


def test_every_code_the_api_can_give_has_spanish_words():
    missing = sorted(problems.known_codes() - set(PROBLEM_ES))
    assert missing == []
    assert sorted(set(PROBLEM_ES) - problems.known_codes()) == []     # no stale words


def test_every_problem_type_has_a_spanish_title():
    assert sorted(set(problems.SLUGS) - set(TITLE_ES)) == []
    for cls in vars(problems).values():
        if isinstance(cls, type) and issubclass(cls, problems.ApiProblem):
            assert cls.slug in problems.SLUGS, cls


def test_an_unknown_code_is_our_bug_and_refused_at_once():
    with pytest.raises(ValueError):
        Refused("amount", "x", "deposit.no_such_code")
    with pytest.raises(ValueError):
        problems.field_error("body", "amount", "x", "no.such.code")


def test_a_spanish_placeholder_names_only_what_its_refusal_carries():
    for code, text in PROBLEM_ES.items():
        names = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        assert all(n.isidentifier() for n in names), code


@pytest.mark.parametrize("error,spanish", [
    (Refused("amount", "the daily deposit limit is 500.00; 20.00 is left today",
             "deposit.daily_max", max="500.00", left="20.00"),
     "el límite diario de depósitos es 500.00; hoy quedan 20.00"),
    (Refused("amount", "x", "deposit.inmate_monthly_max", max="50.00", left="10.00"),
     "el centro permite 50.00 al mes para este interno; quedan 10.00 este mes"),
    (Refused("amount", "x"), "no se puede hacer esto ahora"),           # no code: its kind's
    (Refused("amount", "x", "deposit.daily_max"), "no se puede hacer esto ahora"),  # no params
])
def test_a_family_refusal_is_said_in_spanish_from_its_code(error, spanish):
    with pytest.raises(problems.ApiProblem) as e:
        with family_problems():
            raise error
    es = localized(e.value, "es")
    assert es.errors[0].message == spanish and es.detail == spanish
    assert es.title == "No se puede hacer ahora" and es.status == 409
    assert localized(e.value, "en") is e.value                          # English: the API's


def test_a_validation_failure_is_said_in_spanish_with_its_limits():
    class Body(BaseModel):
        name: Annotated[str, StringConstraints(max_length=5)]
        number: str
    with pytest.raises(ValidationError) as v:
        Body.model_validate({"name": "abcdefg", "zzz": 1})
    p = problems.from_validation("body", v.value)
    es = localized(p, "es")
    said = {e.field: e.message for e in es.errors}
    assert said == {"name": "es demasiado largo (como máximo 5)", "number": "falta este dato"}
    assert all(e.code.startswith("validation.") for e in p.errors)


def test_an_api_refusal_names_its_code_and_params_on_the_wire():
    p = problems.invalid("body", "amount", "12,50 is not an amount", "amount.format")
    doc = p.problem().model_dump()
    assert doc["errors"][0]["code"] == "amount.format" and doc["errors"][0]["params"] == {}


# Refusals no family member reads: operators' configuration, a provider's or a webhook's fault,
# and logins (said by their reason, web.endpoints.family_account).
_NOT_FOR_FAMILIES = {"SettingsInvalid", "WebhookRefused", "ProviderError", "ProviderTimeout",
                     "LoginRefused", "FeeError", "ValueError", "RuntimeError", "IllegalProofMove"}


def test_every_family_refusal_raised_names_its_own_code():
    """A raise site of a family refusal carries a specific code, not its kind's generic one (a
    subclass that sets the code itself, as the proof refusals do, counts)."""
    import ast
    import pathlib
    import families
    bare = []
    for path in sorted(pathlib.Path(families.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            call = node.exc
            name = getattr(call.func, "id", getattr(call.func, "attr", ""))
            if name in _NOT_FOR_FAMILIES or name in ("ProofCallRefused", "CodeRefused"):
                continue
            if name == "PasswordRejected":
                ok = len(call.args) >= 2
            elif name in ("Invalid", "Refused", "NotFound", "NotApproved"):
                ok = len(call.args) >= 3 or any(k.arg == "code" for k in call.keywords)
            else:
                ok = True
            if not ok:
                bare.append(f"{path.name}:{node.lineno} {name}")
    assert bare == []


def test_every_proof_refusal_is_said_in_spanish_by_its_own_words():
    from families.number_proof import CodeRefused, ProofCallRefused
    from families.proof_rules import CodeRefusal, RequestRefusal
    errors = [ProofCallRefused(r) for r in RequestRefusal] + [CodeRefused(r, 2)
                                                             for r in CodeRefusal]
    said = set()
    for error in errors:
        with pytest.raises(problems.ApiProblem) as e:
            with family_problems():
                raise error
        es = localized(e.value, "es").errors[0].message
        assert es != PROBLEM_ES["refused"] and "{" not in es, error.code
        said.add(es)
    assert len(said) == len(errors)
    wrong = CodeRefused(CodeRefusal.WRONG_CODE, 2)
    assert wrong.code == "proof_code.wrong_code" and wrong.params == {"left": "2"}
