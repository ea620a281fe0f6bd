"""Who may do what: operator roles, the rights an operation needs, and facility scope (pure)."""
from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Role", "Right", "ROLE_RIGHTS", "Principal", "may"]


class Role(enum.StrEnum):
    ADMIN = "admin"                     # everything, including operators
    BILLING = "billing"                 # money, CDRs, tariffs, reports
    FACILITY_STAFF = "facility_staff"   # the directory and calls of their named facilities
    AUDITOR = "auditor"                 # reads everything, changes nothing


class Right(enum.StrEnum):
    """What an operation needs. `*_read` rights never change anything."""
    OPERATORS_READ = "operators.read"
    OPERATORS_WRITE = "operators.write"
    AUDIT_READ = "audit.read"
    CDRS_READ = "cdrs.read"
    MONEY_READ = "money.read"
    MONEY_WRITE = "money.write"          # fund, adjust, refund
    MONEY_APPROVE = "money.approve"      # decide another operator's adjustment
    DIRECTORY_READ = "directory.read"
    DIRECTORY_WRITE = "directory.write"
    CALLS_READ = "calls.read"
    CALLS_WRITE = "calls.write"          # terminate a live call
    TARIFFS_READ = "tariffs.read"
    TARIFFS_WRITE = "tariffs.write"
    REPORTS_READ = "reports.read"
    FAMILY = "family"                    # the family API: a holder's own things (no operator role)


_READS = frozenset(r for r in Right if r.value.endswith(".read"))

ROLE_RIGHTS: dict[Role, frozenset[Right]] = {
    Role.ADMIN: frozenset(Right) - {Right.FAMILY},
    Role.BILLING: frozenset({Right.CDRS_READ, Right.MONEY_READ, Right.MONEY_WRITE,
                             Right.MONEY_APPROVE, Right.DIRECTORY_READ, Right.CALLS_READ,
                             Right.TARIFFS_READ, Right.TARIFFS_WRITE, Right.REPORTS_READ}),
    Role.FACILITY_STAFF: frozenset({Right.CDRS_READ, Right.DIRECTORY_READ, Right.DIRECTORY_WRITE,
                                    Right.CALLS_READ, Right.CALLS_WRITE, Right.REPORTS_READ}),
    Role.AUDITOR: _READS,
}


@dataclass(frozen=True)
class Principal:
    """The operator behind a request. `facilities` is None for every facility."""
    operator_id: str
    role: Role
    facilities: frozenset[str] | None

    @property
    def actor(self) -> str:
        return self.operator_id

    def sees(self, facility_id: str | None) -> bool:
        return self.facilities is None or facility_id in self.facilities


def may(role: Role, right: Right) -> bool:
    return right in ROLE_RIGHTS[role]
