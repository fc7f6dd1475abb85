"""``actionmd merge-data OUT PART...``: join the files that ``actionmd generate --part K/N`` wrote.

Conditions are independent, so N processes can each generate the conditions c with c % N == K.
The merged file is the one a single process would have written: the same condition groups
(copied whole), the same root attributes apart from bookkeeping (``part``, ``created_utc``,
``mpi_ranks_first_run``) and ``merged_from_json`` (the part files).
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from .config import ConfigError, conditions
from .store import FORMAT, _open, condition_name

BOOKKEEPING = {"part", "created_utc", "mpi_ranks_first_run", "merged_from_json"}


def merge_parts(output: str | Path, parts: list[str | Path]) -> Path:
    """Merge part files into ``output`` (a new file); refuses parts of different configs, overlapping or
    missing conditions, and unfinished conditions, naming the part and the fix."""
    output = Path(output)
    if not parts:
        raise ConfigError("merge-data: give the part files to merge, e.g. actionmd merge-data all.h5 part_*.h5")
    if output.exists():
        raise ConfigError(f"merge-data: {output} exists; give a new output file (merging never overwrites)")
    paths = [Path(p) for p in parts]
    if len(set(p.resolve() for p in paths)) != len(paths):
        raise ConfigError("merge-data: a part file is given twice; give each once")
    infos = [_read_part(p) for p in paths]
    first = infos[0]
    for info in infos[1:]:
        if info["attrs"]["config_digest"] != first["attrs"]["config_digest"]:
            raise ConfigError(f"merge-data: {info['path']} was generated with another config than {first['path']} "
                              "(config_digest differs); merge only the parts of one config")
        for key in sorted(set(info["attrs"]) | set(first["attrs"])):
            if key not in BOOKKEEPING and info["attrs"].get(key) != first["attrs"].get(key):
                if key == "config_json":  # same digest: only protocol.segments can differ
                    raise ConfigError(f"merge-data: {info['path']} and {first['path']} ask for different "
                                      "protocol.segments; extend the shorter parts (re-run their generate command "
                                      "with the larger protocol.segments) first")
                raise ConfigError(f"merge-data: {info['path']} and {first['path']} differ in {key!r} "
                                  f"({info['attrs'].get(key)!r} vs {first['attrs'].get(key)!r}); generate every part "
                                  "with the same config and installation")
    cfg = json.loads(first["attrs"]["config_json"])
    n_conditions, segments = len(conditions(cfg)), cfg["protocol"]["segments"]
    owner: dict[int, Path] = {}
    for info in infos:
        for c, done in sorted(info["conditions"].items()):
            if c in owner:
                raise ConfigError(f"merge-data: {condition_name(c)} is in both {owner[c]} and {info['path']}; "
                                  "give each part once (parts of one --part N hold disjoint conditions)")
            if c >= n_conditions:
                raise ConfigError(f"merge-data: {info['path']} holds {condition_name(c)}, but the config has "
                                  f"{n_conditions} condition(s); the file is damaged")
            if done < segments:
                raise ConfigError(f"merge-data: {info['path']} holds {done} of {segments} segments of "
                                  f"{condition_name(c)}; finish it (re-run its actionmd generate command) first")
            owner[c] = info["path"]
    missing = [c for c in range(n_conditions) if c not in owner]
    if missing:
        hint = _missing_hint(infos, missing)
        raise ConfigError(f"merge-data: no part holds {', '.join(condition_name(c) for c in missing)} of the "
                          f"{n_conditions} condition(s){hint}; generate and add the missing part(s)")
    tmp = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    with _open(tmp, "w") as out:
        for key, value in first["attrs"].items():
            if key not in BOOKKEEPING:
                out.attrs[key] = value
        out.attrs["created_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        out.attrs["merged_from_json"] = json.dumps([str(p) for p in paths])
        for c in range(n_conditions):
            with _open(owner[c], "r") as src:
                src.copy(src[condition_name(c)], out, name=condition_name(c))
    os.replace(tmp, output)
    return output


def _read_part(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"merge-data: part file {path} does not exist")
    try:
        f = _open(path, "r")
    except OSError as exc:
        raise ConfigError(f"merge-data: {path} is not an HDF5 file ({exc})") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise ConfigError(f"merge-data: {path} is not an actionmd reference file")
        attrs = dict(f.attrs)
        held = {}
        for name in f:
            if name.startswith("condition_") and not name.endswith(".partial"):
                held[int(name.split("_")[1])] = sum(1 for k in f[name]
                                                    if k.startswith("segment_") and not k.endswith(".partial"))
    return {"path": path, "attrs": attrs, "conditions": held}


def _missing_hint(infos: list[dict], missing: list[int]) -> str:
    """Which --part would hold the missing conditions, when the parts agree on N."""
    counts = {info["attrs"]["part"].split("/")[1] for info in infos if info["attrs"].get("part")}
    if len(counts) != 1:
        return ""
    n = int(counts.pop())
    return " (" + ", ".join(sorted({f"--part {c % n}/{n}" for c in missing})) + " would make them)"
