"""The `train` and `export` subcommands."""
from __future__ import annotations


def _train(args) -> int:
    from .config import train_from_config
    path = train_from_config(args.config, progress=not args.no_progress)
    if path is not None:
        print(f"model written to {path}")
    return 0


def _export(args) -> int:
    from pathlib import Path
    from .config import export_from_file, export_from_run
    source = Path(args.run)
    if source.is_file():
        export_from_file(source, args.output, dtype=args.dtype)
    else:
        export_from_run(source, args.output, dtype=args.dtype)
    return 0


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train an action (and predictor) from reference data",
                                  description="Train as CONFIG.yaml says (see actionmd.training.config); "
                                              "resumes from the run's checkpoint. Multi-GPU: torchrun "
                                              "--nproc_per_node=N -m actionmd.cli train CONFIG.yaml")
    train.add_argument("config", help="training config (YAML)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=_train)
    export = subparsers.add_parser("export", help="export the best model of a training run, or re-export a model file",
                                   description="Export a run's best weights, or re-export a learned model file "
                                               "with this version's code (same weights and metadata, checked to "
                                               "compute the same action), e.g. to gain its faster LAMMPS path.")
    export.add_argument("run", help="the run directory (the config's 'output'), or a model file (.pt)")
    export.add_argument("-o", "--output", required=True, help="model file to write (.pt)")
    export.add_argument("--dtype", choices=["float32", "float64"], help="convert the weights (default: as trained)")
    export.set_defaults(func=_export)
