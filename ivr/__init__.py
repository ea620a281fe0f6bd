"""The IVR: prompt catalog and WAVs, say-number/money/duration, and the two call flows.

* `ivr.catalog`: prompt id -> words per language -> ``ivr/prompts/<lang>/<id>.wav``
  (`catalog.path(prompt_id, lang)`); `ivr.make_prompts` regenerates the WAVs with espeak-ng.
* `ivr.say`: `say_number`, `say_money`, `say_duration`, `say_key` -> lists of prompt ids.
* `ivr.flows.inmate`, `ivr.flows.called_party`: pure state machines; `ivr.flows.moves` holds
  their events, actions and the worker's side of the contract.
* `ivr.settings.IvrSettings`: keys, limits and timeouts (the node config's ``[ivr]``).
* `ivr.names`: facility and inmate names as generated WAVs, cached, with a generic fallback.

Nothing here imports twisted, asyncpg or pjsua2 (a test checks it).
"""
