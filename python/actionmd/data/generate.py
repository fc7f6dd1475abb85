"""``actionmd generate``: reference velocity-Verlet trajectories from LAMMPS or an ASE calculator, in HDF5.

Protocol, per condition (composition x temperature):

1. build the system, draw Maxwell-Boltzmann velocities at T, equilibrate ``equilibration_steps``
   with the thermostat (CSVR by default);
2. for each segment k: thermostat for ``decorrelation_steps`` (fresh seed per segment) from
   the end of the previous phase, switch the thermostat off, and record ``segment_steps``
   of plain NVE velocity Verlet, a frame every ``record_every`` steps.

This module runs the protocol, the file and the progress for either engine; an engine object
(lammps_run.LammpsEngine, ase_engine.AseEngine) runs the phases.  Each phase starts afresh from
the exact stored state of the previous one, so a resumed run is bit-for-bit the uninterrupted one.
Under MPI (LAMMPS engine) every rank runs this code; rank 0 alone reads and writes the file.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from .config import ConfigError, conditions
from .protocol import SEED_COMPOSITION, SEED_EQ_THERMOSTAT, SEED_EQ_VELOCITY, SEED_SEGMENT, seed
from .store import Store, frames_to_arrays
from .units import FORCE_TO_ACCELERATION


def make_engine(cfg: dict, comm=None):
    """The engine object of the config's ``engine``."""
    if cfg.get("engine", "lammps") == "ase":
        from .ase_engine import AseEngine

        return AseEngine(cfg)
    from .lammps_run import LammpsEngine

    return LammpsEngine(cfg, comm)


class _Collective:
    """Run a callable on rank 0 and share its result or its exception with every rank."""

    def __init__(self, comm):
        self.comm = comm

    def __call__(self, fn, *args, **kwargs):
        result, error = None, None
        if self.comm.rank == 0:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # re-raised on every rank below
                error = exc
        result, error = self.comm.bcast((result, error), root=0)
        if error is not None:
            raise error
        return result


def parse_part(text: str | None) -> tuple[int, int] | None:
    """``--part K/N`` -> (K, N): this process generates the conditions c with c % N == K."""
    if text is None:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        k = n = -1
    if not 0 <= k < n:
        raise ConfigError(f"--part {text!r}: give K/N with 0 <= K < N, e.g. --part 0/4 ... --part 3/4 "
                          "(condition c goes to part c % N)")
    return k, n


def _segment_arrays(frames, origin, cell, masses, units, proto) -> dict:
    arrays = frames_to_arrays(frames, origin, cell, masses, units)
    n = len(frames)
    arrays["time_fs"] = np.arange(n) * proto["dt"] * proto["record_every"]
    arrays["step"] = np.arange(n, dtype=np.int64) * proto["record_every"]
    return arrays


class StopRequested(BaseException):
    """A signal, or ``stop_requested()`` at a progress tick: unwind like Ctrl-C (a BaseException, so that no
    ``except Exception`` on the way swallows it), closing the file and removing the scratch directory."""


def generate(cfg: dict, output: str | Path, *, progress: bool = True,
             stop_after_segments: int | None = None, comm=None,
             stop_requested: Callable[[], bool] | None = None, part: tuple[int, int] | None = None) -> Path:
    """Generate (or resume) the reference file ``output`` for the resolved config ``cfg``.

    ``stop_after_segments`` stops after that many newly written segments, as a kill would
    (used by the resume tests).  ``stop_requested`` is polled at every progress tick (a few dozen
    times per segment); True on any rank raises StopRequested on every rank.  ``part`` = (K, N)
    generates only the conditions c with c % N == K (``actionmd merge-data`` joins the parts).
    Returns the output path.
    """
    engine = make_engine(cfg, comm)
    comm = engine.comm
    rank0 = comm.rank == 0
    on_rank0 = _Collective(comm)
    proto = cfg["protocol"]
    conds = conditions(cfg)
    output = Path(output)
    mine = list(range(len(conds)))
    if part is not None:
        mine = [c for c in mine if c % part[1] == part[0]]
        if not mine:
            raise ConfigError(f"--part {part[0]}/{part[1]}: the config has {len(conds)} condition(s), so part "
                              f"{part[0]} would hold none; use N <= {len(conds)}")

    metadata = {
        "actionmd_version": __version__, "engine": cfg.get("engine", "lammps"), **engine.metadata(),
        "units": "positions A, momenta u*A/fs, time fs, masses u, energies eV, forces eV/A",
        "dt_fs": proto["dt"], "record_every": proto["record_every"],
        "frame_interval_fs": proto["dt"] * proto["record_every"], "seed": cfg["seed"],
        "elements_json": json.dumps(cfg["elements"]), "system": cfg.get("system") or "",
        "thermostat": proto["thermostat"], "codata_force_to_acceleration": FORCE_TO_ACCELERATION,
        **({"part": f"{part[0]}/{part[1]}"} if part is not None else {}),
    }
    store = on_rank0(lambda: Store(output, cfg, metadata, engine.state_class))
    plan = on_rank0(lambda: store.plan(len(conds)))

    per_segment = proto["decorrelation_steps"] + proto["segment_steps"]
    total = sum(
        (0 if plan[c]["state"] is not None else proto["equilibration_steps"])
        + max(0, proto["segments"] - plan[c]["next_segment"]) * per_segment
        for c in mine
    )
    bar = None
    if rank0 and progress:
        from ..progress import progress_bar

        bar = progress_bar(total=total, unit="step", desc=output.name, dynamic_ncols=True)
    def tick(n: int) -> None:
        # every rank polls and all agree, so that they unwind together (a rank left waiting in a
        # collective call would hang the job until the scheduler's SIGKILL)
        if stop_requested is not None and comm.allreduce(int(stop_requested()), op=engine.max_op):
            raise StopRequested()
        if bar is not None:
            bar.update(n)

    written = 0
    t0 = time.perf_counter()
    with engine.session(on_rank0):
        try:
            for c in mine:
                cond, state = conds[c], plan[c]["state"]
                seeds = {"velocity": seed(cfg["seed"], c, SEED_EQ_VELOCITY),
                         "thermostat": seed(cfg["seed"], c, SEED_EQ_THERMOSTAT),
                         "composition": seed(cfg["seed"], c, SEED_COMPOSITION)}
                if bar is not None:
                    bar.set_postfix_str(f"condition {c + 1}/{len(conds)} T={cond['temperature']:g} K")
                if state is None:
                    state, static = engine.equilibrate({**cond, "index": c}, seeds, tick)
                    on_rank0(lambda: store.write_condition(c, cond, seeds=seeds, equilibrated=state, **static))
                for k in range(plan[c]["next_segment"], proto["segments"]):
                    seg_seed = seed(cfg["seed"], c, SEED_SEGMENT, k)
                    frames, state, (origin, cell, masses) = engine.segment(
                        {**cond, "index": c}, k, seeds, state, seg_seed, tick)
                    on_rank0(lambda: store.write_segment(
                        c, k, _segment_arrays(frames, origin, cell, masses, engine.units, proto),
                        state, {"thermostat_seed": seg_seed, "n_frames": len(frames)}))
                    written += 1
                    if stop_after_segments is not None and written >= stop_after_segments:
                        return output
        finally:
            if bar is not None:
                bar.close()
    if rank0:  # also without a progress bar: the one line a batch log needs
        held = sum(max(plan[c]["next_segment"], proto["segments"]) for c in mine)
        which = f" (part {part[0]}/{part[1]})" if part is not None else ""
        print(f"{output}: {written} new segment(s) in {time.perf_counter() - t0:.1f} s; it holds {held} "
              f"segment(s) over {len(mine)} condition(s){which}"
              + ("" if written else f" (protocol.segments={proto['segments']} per condition asks for no more)"))
    return output
