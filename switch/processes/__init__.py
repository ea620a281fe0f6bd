"""The node's media worker processes: started, watched, restarted and reached.

`supervisor` keeps the workers running and knows each one's free call slots; `frontdoor` is the
single-node SIP redirector that sends each kiosk INVITE to a worker with a free slot; `lifeline`
ties a worker to the node that started it; `stale` finds and ends workers a crashed run left.
What they need from the node (settings, metrics registry) is handed to them by `ops.node`.
"""
