"""The ``generate`` and ``merge-data`` subcommands.  ``register(subparsers)`` adds them to the main CLI;
``python -m actionmd.data generate ...`` runs them stand-alone (also under mpirun)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .config import ConfigError, builtin_systems, load_config


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "generate",
        help="generate reference velocity-Verlet trajectories with LAMMPS or an ASE calculator",
        description=(
            "Run reference velocity-Verlet trajectories with the LAMMPS Python module (engine: lammps) or "
            "an ASE calculator (engine: ase) and store them in HDF5 (model units: A, fs, u, eV). CONFIG is "
            f"a YAML file or a built-in system ({', '.join(builtin_systems())}). Resumable: re-run the same "
            "command to continue. Under MPI (LAMMPS): mpirun -np N actionmd generate CONFIG. Conditions "
            "split over jobs with --part K/N; actionmd merge-data joins the parts."
        ),
    )
    p.add_argument("config", metavar="CONFIG", help="YAML config file or built-in system name")
    p.add_argument("-o", "--output", help="HDF5 output (default: config 'output' key, else <name>.h5)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set structure.repeat=[2,2,2] "
                        "--set protocol.segments=2 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--part", metavar="K/N",
                   help="generate only the conditions c with c %% N == K (0 <= K < N), e.g. one job of an array "
                        "each; join the part files with actionmd merge-data")
    p.set_defaults(func=run)
    m = subparsers.add_parser(
        "merge-data", help="join the part files of actionmd generate --part K/N into one reference file",
        description="Join the part files that `actionmd generate CONFIG --part K/N` wrote into OUTPUT, the file "
                    "one process would have written. Refuses parts of different configs, overlapping, missing "
                    "or unfinished conditions.")
    m.add_argument("output", metavar="OUTPUT", help="the merged HDF5 file to write (must not exist)")
    m.add_argument("parts", metavar="PART", nargs="+", help="the part files")
    m.set_defaults(func=run_merge)
    return p


def run_merge(args) -> int:
    from .merge import merge_parts

    try:
        out = merge_parts(args.output, args.parts)
    except ConfigError as exc:
        print(f"actionmd merge-data: error: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: merged {len(args.parts)} part(s)")
    return 0


_received: list[int] = []  # signals seen during this run: a dropped StopRequested still stops it


def run(args) -> int:
    from .generate import StopRequested

    def stop(signum, frame):
        """Ctrl-C or SIGTERM (a batch scheduler's time limit, `kill`): unwind, closing the HDF5 file and
        removing the scratch directory. Where Python drops the exception (a signal landing in a garbage-
        collection callback), the remembered signal stops the run at the next progress tick. Under MPI
        every rank must stop at the same point, or those still in a collective call wait for the others
        forever: the signal is only remembered, and the ranks agree at the next progress tick."""
        _received.append(signum)
        world = _mpi_world()
        if world is None or world.size == 1:
            raise StopRequested()

    on_main_thread = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, stop) for s in signals} if on_main_thread else {}
    _received.clear()
    try:
        return _run(args)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(args) -> int:
    from .generate import StopRequested, generate, parse_part
    from .protocol import EngineError

    output = None
    try:
        part = parse_part(getattr(args, "part", None))
        cfg = load_config(args.config, args.overrides)
        output = args.output or cfg.get("output") or f"{Path(args.config).stem}.h5"
        generate(cfg, output, progress=not args.no_progress, stop_requested=lambda: bool(_received), part=part)
    except (StopRequested, KeyboardInterrupt, ConfigError, EngineError) as exc:
        comm = _mpi_world()
        if _received or isinstance(exc, (StopRequested, KeyboardInterrupt)):
            signum = _received[0] if _received else signal.SIGINT
            how = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
            if comm is None or comm.rank == 0:
                print(f"actionmd generate: {how}; finished segments are kept in {output}: "
                      "re-run the same command to continue", file=sys.stderr)
            return 128 + signum
        if comm is not None and comm.size > 1 and getattr(exc, "one_rank", False):
            # LAMMPS raised on this rank only (error->one): the others wait in a collective
            # call forever unless the whole job is aborted.
            print(f"actionmd generate: error (MPI rank {comm.rank}): {exc}", file=sys.stderr, flush=True)
            comm.Abort(2)
            return 2  # mpich's Abort can return before the process manager kills the job
        if comm is None or comm.rank == 0:
            print(f"actionmd generate: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _mpi_world():
    """MPI.COMM_WORLD if mpi4py is loaded (it is once LAMMPS was), else None."""
    mpi = sys.modules.get("mpi4py.MPI")
    return mpi.COMM_WORLD if mpi is not None else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actionmd.data")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
