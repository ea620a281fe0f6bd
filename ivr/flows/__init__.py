"""The two IVR call flows, as pure state machines the media worker drives (events in, actions out).

`ivr.flows.inmate` runs the kiosk leg, `ivr.flows.called_party` the outbound leg; `ivr.flows.moves`
holds the events, the actions and the worker's side of the contract.
"""
