"""Provisioning: who may call whom, as rows in the database (kiosks, inmates, contacts, blocks,
schedules, routes, prepaid phone accounts). One set of write rules, used by the CLI, the HTTP API
and the families; loading a whole directory file lives in `ops.seed`.
"""
