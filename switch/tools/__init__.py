"""Tools: simulated SIP peers (`sim`: a kiosk that dials and keys digits, a called party that
answers, presses keys and talks), built on `switch.worker.media`, used by `ics demo` and tests.
"""
