"""The `train` and `export` subcommands."""
from __future__ import annotations

import os
import signal
import sys
import threading


class StopRequested(BaseException):
    """SIGTERM (a batch scheduler's time limit, `kill`) unwinds like Ctrl-C: a BaseException, so that no
    ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _train(args) -> int:
    from .config import train_from_config

    def stop(signum, frame):
        raise StopRequested(signum)

    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if on_main_thread else {}
    try:
        path = train_from_config(args.config, progress=not args.no_progress, finish=args.finish)
    except (StopRequested, KeyboardInterrupt) as exc:
        return _stopped(args.config, getattr(exc, "signum", signal.SIGINT))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if path is not None:
        print(f"model written to {path}")
        _print_verdict(path.parent)
    return 0


def _print_verdict(run) -> None:
    """The closing rollout's figures against the goals (actionmd.training.verdict), from summary.json."""
    import json
    from pathlib import Path
    from .verdict import print_verdict
    summary = Path(run) / "summary.json"
    if summary.is_file():
        print_verdict(json.loads(summary.read_text()), sys.stdout, sys.stderr)


def _stopped(config: str, signum: int) -> int:
    """One line instead of a traceback: every finished epoch is in the checkpoint, and rerunning resumes."""
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank gets the signal
        how = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
        print(f"actionmd train: {how}; the checkpoint of the last finished epoch is kept in {_output(config)}: "
              "rerun the same command to resume", file=sys.stderr)
    return 128 + signum


def _output(config: str) -> str:
    from .config import read_config
    try:
        return read_config(config)["output"]
    except ValueError:
        return "the config's output folder"


def _export(args) -> int:
    from pathlib import Path
    from .config import export_from_file, export_from_run
    source = Path(args.run)
    if source.is_file():
        export_from_file(source, args.output, dtype=args.dtype, data=args.data)
    else:
        export_from_run(source, args.output, dtype=args.dtype, data=args.data)
    return 0


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train an action (and predictor) from reference data",
                                  description="Train as CONFIG.yaml says (keys: docs/training.md); rerunning the "
                                              "same command resumes from the run's checkpoint. Multi-GPU: torchrun "
                                              "--nproc_per_node=N -m actionmd.cli train CONFIG.yaml")
    train.add_argument("config", metavar="CONFIG.yaml", help="training config (YAML)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--finish", action="store_true",
                       help="train no further epochs: close a stopped run from its checkpoint's best weights "
                            "(closing rollout, verdict, model.pt)")
    train.set_defaults(func=_train)
    export = subparsers.add_parser("export", help="export the best model of a training run, or re-export a model file",
                                   description="Export a run's best weights, or re-export a learned model file "
                                               "with this version's code (same weights and metadata, checked to "
                                               "compute the same action), e.g. to gain its faster LAMMPS path.")
    export.add_argument("run", help="the run directory (the config's 'output'), or a model file (.pt)")
    export.add_argument("-o", "--output", required=True,
                        help="model file to write (.pt; its folder is made; an existing model file is replaced, "
                             "even by itself, any other file never)")
    export.add_argument("--dtype", choices=["float32", "float64"], help="convert the weights (default: as trained)")
    export.add_argument("--data", nargs="+", metavar="H5",
                        help="the model's training data: record the closest pair of each species pair in it, so "
                             "that the engines warn when a run goes closer (training records it itself)")
    export.set_defaults(func=_export)
