"""The wire between the core and its media workers: the AMP commands (`protocol`) and who may
speak them (`amp_auth`). Both sides import it; it imports neither side, so a worker never
loads the core's database code.
"""
