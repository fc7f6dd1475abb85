"""Built-in reference systems: one YAML config per system (name = file stem).

List them with ``actionmd.data.config.builtin_systems()``; use one with
``actionmd generate NAME`` or ``system: NAME`` in a config.
"""
