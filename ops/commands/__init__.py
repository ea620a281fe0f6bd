"""Subcommand groups of the `ics` CLI, one module each (see `ops.cli`)."""
