"""actionmd: long-time-step molecular dynamics from a learned mechanical action. Subcommands: generate
(reference data from LAMMPS or an ASE calculator), merge-data (join generate --part files), train, export,
info, evaluate; `actionmd COMMAND --help` for each."""
from __future__ import annotations

import argparse
import json
import sys


def _info(args) -> int:
    from .model_file import read_metadata  # torch: imported by the commands that need it, not by --help
    meta = read_metadata(args.model)
    if args.json:
        print(json.dumps(meta.to_json(), indent=2))
        return 0
    from ase.data import chemical_symbols
    print(f"model            {args.model}")
    print(f"species          {' '.join(chemical_symbols[z] for z in meta.species)}  (type ids 0..{len(meta.species) - 1})")
    print(f"masses [u]       {' '.join(f'{m:g}' for m in meta.masses)}")
    print(f"stride           {meta.stride:g} fs")
    print(f"cutoff           {meta.cutoff:g} Å   interaction_range {meta.interaction_range:g} Å")
    print(f"dtype            {meta.dtype}")
    print(f"predictor        {'yes' if meta.has_predictor else 'no'}   time-reversible {'yes' if meta.time_reversible else 'no'}")
    for key, value in meta.extra.items():
        print(f"{key:<16} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actionmd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="print a model file's metadata",
                               description="Print a model file's metadata: species and masses (which the "
                                           "atoms must have), stride (the timestep), cutoff and "
                                           "interaction range (LAMMPS's comm_modify cutoff must be at "
                                           "least this + the neighbor skin + one stride's motion), dtype, "
                                           "predictor, and how it was trained.")
    info.add_argument("model", help="path to an actionmd model file (.pt)")
    info.add_argument("--json", action="store_true", help="print the raw actionmd.json")
    info.set_defaults(func=_info)
    from .data.cli import register as register_generate
    from .evaluation.cli import register as register_evaluate
    from .training.cli import register as register_training
    register_generate(commands)
    register_training(commands)
    register_evaluate(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # ModelFileError, ConfigError, ... are ValueErrors
        print(f"actionmd {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # e.g. while torch is still importing; the long commands handle it themselves
        print(f"actionmd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
