"""The server-rendered page layer shared by the operators' console and the families' portal."""
