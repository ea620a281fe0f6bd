"""A table of roles over every operation: each role can do exactly what it should.

The table is written out here, not derived from web.roles, so a wrong grant there fails it; and
it must name every operation the API declares, so a new operation cannot slip in unreviewed.
Allowed means the request passed the role check (anything but 401/403); refused means 403.
"""
from __future__ import annotations

import uuid

import pytest

from tests.web.cdr_rows import ensure_facilities
from tests.web.conftest import make_operator
from web.endpoints import REGISTRY

A, B, F, U = "admin", "billing", "facility_staff", "auditor"
ALL = {A, B, F, U}

TABLE = {
    "list_operators": {A, U},
    "add_operator": {A},
    "issue_token": {A},
    "revoke_tokens": {A},
    "list_audit": {A, U},
    "list_cdrs": ALL,
    "export_cdrs": ALL,
    "open_account": {A, B},
    "get_account": {A, B, U},
    "account_statement": {A, B, U},
    "fund_account": {A, B},
    "adjust_account": {A, B},
    "list_adjustments": {A, B, U},
    "decide_adjustment": {A, B},
    "refund_account": {A, B},
    "list_facilities": ALL,
    "get_facility": ALL,
    "add_facility": {A, F},
    "update_facility": {A, F},
    "list_kiosks": ALL,
    "put_kiosk": {A, F},
    "list_inmates": ALL,
    "get_inmate": ALL,
    "add_inmate": {A, F},
    "update_inmate": {A, F},
    "unlock_inmate": {A, F},
    "upload_name": {A, F},
    "list_contacts": ALL,
    "add_contact": {A, F},
    "set_contact_status": {A, F},
    "list_blocks": ALL,
    "add_block": {A, F},
    "list_routes": ALL,
    "put_route": {A, F},
    "list_windows": ALL,
    "add_window": {A, F},
    "list_calls": ALL,
    "terminate_call": {A, F},
    "usage_report": {A, B, F, U},
    "fcc_report": {A, B, F, U},
    "check_deck": {A, B, U},
    "import_tariff": {A, B},
    "list_tariff_versions": {A, B, U},
    "export_tariff": {A, B, U},
    "diff_tariff": {A, B, U},
    "quote": {A, B, U},
    "max_seconds": {A, B, U},
    "prove_family_number": {A, B},
    "agent_fund_number": {A, B},
    "third_party_payment": {A, B},
    "list_family_requests": ALL,
    "decide_family_request": {A, F},
    "set_family_policy": {A, F},
}
# The family API's own operations answer to a holder's session or to anyone (never to an
# operator's role): tests/web/test_family_*.py cover them.
FAMILY_OPERATIONS = {op.operation_id for op in REGISTRY.operations if op.auth != "operator"}

PATH_VALUES = {"account": "+12125550199", "operator": "nobody-here",
               "adjustment": str(uuid.UUID(int=1)), "facility": "north", "inmate": "99999",
               "number": "+12125550142", "call": str(uuid.UUID(int=2)),
               "request": str(uuid.UUID(int=3))}


def test_the_table_names_every_operation_the_api_declares():
    assert set(TABLE) == {op.operation_id for op in REGISTRY.operations} - FAMILY_OPERATIONS


@pytest.fixture(scope="module")
async def role_apis(admin, db):
    await ensure_facilities(db)
    return {A: admin, B: admin.as_(await make_operator(db, "r-bill", "billing")),
            F: admin.as_(await make_operator(db, "r-staff", "facility_staff", ["north"])),
            U: admin.as_(await make_operator(db, "r-audit", "auditor"))}


@pytest.mark.parametrize("op", [op for op in REGISTRY.operations if op.auth == "operator"],
                         ids=lambda op: op.operation_id)
async def test_each_role_is_allowed_exactly_what_the_table_says(role_apis, op):
    path = op.path
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    for role, api in role_apis.items():
        # An empty body: an allowed role gets past the role check to validation (422) or a
        # lookup (404); nothing is created, so the order of roles does not matter.
        r = api.request(op.method, path, json={} if op.body_model else None)
        allowed = role in TABLE[op.operation_id]
        if allowed:
            assert r.status_code not in (401, 403), (role, op.operation_id, r.text)
        else:
            assert r.status_code == 403, (role, op.operation_id, r.status_code, r.text)
            assert op.right.value in r.json()["detail"]
