"""Runs a SIPVicious tool from a chosen source address: `python sv_from.py SOURCE TOOL ARGS...`
(TOOL is svmap, svwar or svcrack). svwar 0.3.4 ignores its own --bindingip, so every socket the
tool binds to the wildcard address is bound to SOURCE instead."""
import importlib
import socket
import sys

source, tool, *args = sys.argv[1:]
_bind = socket.socket.bind


def bind(self, address):
    if isinstance(address, tuple) and address[0] in ("", "0.0.0.0"):
        address = (source, *address[1:])
    return _bind(self, address)


socket.socket.bind = bind
sys.argv = [f"sipvicious_{tool}", *args]
sys.exit(importlib.import_module(f"sipvicious.{tool}").main())
