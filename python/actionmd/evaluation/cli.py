"""The ``evaluate`` subcommand: ``actionmd evaluate TRAJ ... -o OUTDIR``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers):
    from .reading import FORMATS

    p = subparsers.add_parser(
        "evaluate", help="energy, equipartition, RDF and dynamics of trajectories, against a reference",
        description="Measure MD trajectories (ASE .traj/extxyz, LAMMPS text dumps): total energy under the reference "
                    "potential (re-evaluated with LAMMPS), temperature per species and direction, RDFs, VACF, "
                    "diffusion and vibrational spectrum; compare with a reference run. Writes report.md, "
                    "results.json and PNG plots to OUTDIR. Definitions: docs/evaluation.md.")
    p.add_argument("trajectories", nargs="+", metavar="TRAJ", help="trajectory files (one run each)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the report")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one label per TRAJ (default: file names)")
    p.add_argument("--reference", metavar="TRAJ", help="reference run (velocity Verlet at the reference dt)")
    p.add_argument("--reference-label", default="reference", metavar="LABEL",
                   help="the reference run's name in tables and plots (default: reference)")
    p.add_argument("--system", metavar="NAME|YAML",
                   help="re-evaluate energies with this system's LAMMPS potential, or its ASE calculator for a "
                        "config with engine: ase (built-in name or config YAML); also supplies dump element types, "
                        "units and masses")
    p.add_argument("--interval", type=float, nargs="+", metavar="FS",
                   help="time between frames of the runs [fs]: one value for all, or one per TRAJ")
    p.add_argument("--reference-interval", type=float, metavar="FS",
                   help="the same for --reference (the runs' --interval does not apply to it)")
    p.add_argument("--timestep", type=float, nargs="+", metavar="FS",
                   help="LAMMPS dumps: the timestep [fs], one value for all or one per TRAJ (runs at different "
                        "strides); frame times are TIMESTEP values times this")
    p.add_argument("--reference-timestep", type=float, metavar="FS",
                   help="the same for --reference (the runs' --timestep does not apply to it)")
    p.add_argument("--types", nargs="+", metavar="EL",
                   help="LAMMPS dumps: element of type 1, 2, ... (with --system: must follow its element order)")
    p.add_argument("--units", choices=("metal", "real"), help="LAMMPS dumps: units (default: the system's, or metal)")
    p.add_argument("--format", choices=FORMATS, help="file format (default: from the suffix)")
    p.add_argument("--r-max", type=_positive(float), metavar="Å",
                   help="RDF range (default: half the smallest cell width)")
    p.add_argument("--bins", type=_positive(int), default=200, help="RDF bins (default 200)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def _positive(kind):
    """An argparse type: a number of ``kind`` > 0 (argparse then names the option in its error)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"must be a positive {'whole number' if kind is int else 'number'}, "
                                             f"got {text!r}")
        return value
    return parse


def _per_run(values: list[float] | None, paths: list[str], flag: str) -> list[float | None]:
    """One value per trajectory: a single value applies to every run; several go one per TRAJ, in order.
    Runs at different strides need their own (one value for both would give one of them the wrong times)."""
    from .trajectory import EvaluationError

    if values is None:
        return [None] * len(paths)
    if len(values) == 1:
        return values * len(paths)
    if len(values) != len(paths):
        raise EvaluationError(f"{flag}: give one value for every run or one per trajectory ({len(paths)}), "
                              f"got {len(values)}")
    return values


def _labels(paths: list[str], labels: list[str] | None) -> list[str]:
    from .trajectory import EvaluationError

    if labels is not None:
        if len(labels) != len(paths) or len(set(labels)) != len(labels):
            raise EvaluationError(f"--labels: give {len(paths)} distinct labels, one per trajectory (got {labels})")
        return labels
    resolved = [Path(p).resolve() for p in paths]
    twice = next((p for k, p in enumerate(paths) if resolved[k] in resolved[:k]), None)
    if twice is not None:  # the same labels would collapse the two runs into one
        raise EvaluationError(f"{twice} is given twice; give each trajectory once (or distinct --labels to "
                              "evaluate the same file twice)")
    out = [Path(p).stem for p in paths]
    return out if len(set(out)) == len(out) else [str(p) for p in paths]


def _types(args, cfg: dict | None) -> list[str] | None:
    """Dump elements by LAMMPS type: --types, or the system's; the two must not disagree."""
    from .trajectory import EvaluationError

    if not args.types or cfg is None:
        return args.types or (cfg["elements"] if cfg else None)
    elements = list(cfg["elements"])
    if args.types[:len(elements)] != elements[:len(args.types)]:
        raise EvaluationError(
            f"--types {' '.join(args.types)} contradicts --system {args.system}, whose LAMMPS types are "
            f"{' '.join(elements)} (type 1 = {elements[0]}): a dump written with this system needs --types "
            f"{' '.join(elements)}, or no --types; for a dump written with another type order, use a system YAML "
            "whose elements (and pair_coeff lines) follow that order")
    return args.types


def run(args) -> int:
    from ..data.lammps_run import LammpsError
    from .energy import load_system
    from .side_by_side import evaluate
    from .reading import read_trajectory
    from .report import check_outdir, text_table, write_report
    from .trajectory import EvaluationError

    check_outdir(args.output)
    cfg = load_system(args.system) if args.system else None
    common = dict(types=_types(args, cfg), units=args.units or (cfg["units"] if cfg else "metal"),
                  masses=cfg["masses"] if cfg else None, format=args.format)
    labels = _labels(args.trajectories, args.labels)
    if args.reference and args.reference_label in labels:
        raise EvaluationError(f"--reference-label {args.reference_label!r} is also a run label; choose another")
    intervals = _per_run(args.interval, args.trajectories, "--interval")
    timesteps = _per_run(args.timestep, args.trajectories, "--timestep")
    runs = {label: read_trajectory(path, interval_fs=interval, timestep_fs=timestep, **common)
            for label, path, interval, timestep in zip(labels, args.trajectories, intervals, timesteps)}
    if args.reference:  # its time comes from its own options or file, never from the runs' (another dt)
        runs[args.reference_label] = read_trajectory(
            args.reference, interval_fs=args.reference_interval, timestep_fs=args.reference_timestep,
            flag_prefix="--reference-", **common)
    try:
        results = evaluate(runs, args.reference_label if args.reference else None, system=args.system,
                           r_max=args.r_max, rdf_bins=args.bins, progress=not args.no_progress)
    except LammpsError as exc:
        print(f"actionmd evaluate: error: {exc}", file=sys.stderr)
        return 2
    paths = write_report(results, args.output)
    print(text_table(results))
    for warning in results["warnings"]:
        print(f"warning: {warning}")
    print(f"report: {paths[0]}")
    return 0
