"""Registers the named protocols of ``configs/protocol/*.yaml`` (imported by the registry on first use)."""

from __future__ import annotations

from data.configs import option_names, read_option
from evaluation.protocols.registry import protocol_from_config, register_protocol


def _register_named_protocols() -> None:
    for name in option_names("protocol"):
        protocol = protocol_from_config(read_option(f"protocol/{name}"), path=f"protocol {name}")
        if protocol.name != name:
            raise ValueError(f"configs/protocol/{name}.yaml names its protocol {protocol.name!r}; the two must agree")
        register_protocol(protocol)


_register_named_protocols()
