"""A deterministic fault simulator for the charging loop, in the spirit of TigerBeetle's VOPR.

From one seed it builds a facility with shared prepaid accounts on a real PostgreSQL, runs the
real core (`switch.control.core.Core` behind the real AMP service, `switch.control.service.WorkerLink`) on a
simulated clock, drives it with simulated media workers that keep their grants the way
`switch.worker` does, injects faults (lost, duplicated, delayed and reordered messages, worker
loss, core crashes, database outages, tariff versions taking effect, accounts running dry,
hang-ups at every offset of a period) and then checks the money (`checks`).

Every choice comes from one `random.Random(seed)` and every instant from the simulated clock, and
the core is handed one message at a time, so a seed replays exactly:

    python -m tests.sim --seed N --calls M
"""
