"""What every state machine of the engine shares: the error of an illegal move, and the holder
that keeps a pure flow's state between events for its driver.

The machines are pure (an enum of states and one transition function): the IVR flows here, the
call session (switch.rules.session), a worker's call phases and talk grant (switch.worker) and the
supervisor's workers (switch.processes.supervisor). Each refuses a move its state cannot take with a
subclass of `IllegalMove`, so a driver catches one type. This module lives on the lowest floor,
beside the flows, so that every machine above may derive from it; it imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["IllegalMove", "Flow"]


def _name(state: object) -> str:
    return str(getattr(state, "name", state))


class IllegalMove(Exception):
    """A machine was fed an event its current state cannot take: the driver's bug, never a
    caller's. ``what`` names the machine, ``where`` the state it was in, ``value`` the event it
    refused (also as ``machine``, ``state`` and ``event``)."""

    def __init__(self, machine: str, state: object, event: object, message: str = "") -> None:
        super().__init__(message or f"{machine} in state {_name(state)} cannot take {event!r}")
        self.machine, self.state, self.event = machine, state, event

    @property
    def what(self) -> str:
        return self.machine

    @property
    def where(self) -> object:
        return self.state

    @property
    def value(self) -> object:
        return self.event


class _Held(Protocol):
    @property
    def done(self) -> bool: ...


CallT = TypeVar("CallT", bound=_Held)
EventT = TypeVar("EventT")
ActionT = TypeVar("ActionT")


class Flow(Generic[CallT, EventT, ActionT]):
    """A pure flow's `begin` and `step`, holding the state for the worker:
    ``actions = flow.feed(event)``. The flow itself stays a function of (state, event)."""

    def __init__(
        self,
        begun: tuple[CallT, list[ActionT]],
        step: Callable[[CallT, EventT], tuple[CallT, list[ActionT]]],
    ) -> None:
        self.call, self.started = begun
        self._step = step

    def start(self) -> list[ActionT]:
        """The first actions (once)."""
        actions, self.started = self.started, []
        return actions

    def feed(self, event: EventT) -> list[ActionT]:
        """The actions for `event`; an event the state cannot take raises `IllegalMove`."""
        self.call, actions = self._step(self.call, event)
        return actions

    @property
    def done(self) -> bool:
        return self.call.done
