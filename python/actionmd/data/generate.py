"""``actionmd generate``: reference velocity-Verlet trajectories from LAMMPS, stored in HDF5.

Protocol, per condition (composition x temperature):

1. build the system, draw Maxwell-Boltzmann velocities at T (``velocity ... loop geom``),
   equilibrate ``equilibration_steps`` with the thermostat (CSVR by default);
2. for each segment k: thermostat for ``decorrelation_steps`` (fresh seed per segment) from
   the end of the previous phase, switch the thermostat off, and record ``segment_steps``
   of plain NVE velocity Verlet, a frame every ``record_every`` steps.

Each phase runs in a fresh LAMMPS instance started from the exact stored state of the
previous one, so a resumed run is bit-for-bit the uninterrupted one.  Under MPI every rank
runs this code; rank 0 alone reads and writes the file.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from ase.data import atomic_numbers

from .. import __version__
from .config import conditions, element_mass
from .lammps_run import Simulation, State, import_lammps, lammps_versions
from .store import Store, frames_to_arrays
from .structures import ase_file_data, atoms_data, crystal_atoms, water_box_data
from .units import UNITS, FORCE_TO_ACCELERATION


def _seed(base: int, *key: int) -> int:
    """A seed every LAMMPS RNG accepts (1 .. 9e8, Marsaglia) from the config seed and a key."""
    state = np.random.SeedSequence(base, spawn_key=key).generate_state(1)[0]
    return int(state % 899_999_999) + 1


SEED_EQ_VELOCITY, SEED_EQ_THERMOSTAT, SEED_COMPOSITION, SEED_SEGMENT, SEED_STRUCTURE = range(5)


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


def _structure_file(cfg: dict, workdir: str) -> str | None:
    st = cfg["structure"]
    if "data_file" in st:
        return st["data_file"]
    path = os.path.join(workdir, "structure.data")
    if "water_box" in st:
        masses = {el: element_mass(cfg, el) for el in ("O", "H")}
        text = water_box_data(st["water_box"]["molecules"], st["water_box"]["density"],
                              _seed(cfg["seed"], SEED_STRUCTURE), masses)
    elif "file" in st:
        text = ase_file_data(st["file"], st.get("format"), cfg["elements"], cfg["atom_style"])
    elif "crystal" in st:
        text = atoms_data(crystal_atoms(st), cfg["elements"], cfg["atom_style"], f"crystal {st['crystal']}")
    else:
        return None
    Path(path).write_text(text)
    return path


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
             stop_requested: Callable[[], bool] | None = None) -> Path:
    """Generate (or resume) the reference file ``output`` for the resolved config ``cfg``.

    ``stop_after_segments`` stops after that many newly written segments, as a kill would
    (used by the resume tests).  ``stop_requested`` is polled at every progress tick (a few dozen
    times per segment); True on any rank raises StopRequested on every rank.  Returns the output path.
    """
    MPI, lammps = import_lammps()
    comm = comm if comm is not None else MPI.COMM_WORLD
    rank0 = comm.rank == 0
    on_rank0 = _Collective(comm)
    units = UNITS[cfg["units"]]
    proto = cfg["protocol"]
    conds = conditions(cfg)
    output = Path(output)

    metadata = {
        "actionmd_version": __version__, **lammps_versions(),
        "lammps_units": cfg["units"], "units": "positions A, momenta u*A/fs, time fs, masses u, "
        "energies eV, forces eV/A", "dt_fs": proto["dt"], "record_every": proto["record_every"],
        "frame_interval_fs": proto["dt"] * proto["record_every"], "seed": cfg["seed"],
        "potential_json": json.dumps(cfg["potential"]), "elements_json": json.dumps(cfg["elements"]),
        "system": cfg.get("system") or "", "thermostat": proto["thermostat"],
        "mpi_ranks_first_run": comm.size, "codata_force_to_acceleration": FORCE_TO_ACCELERATION,
    }
    store = on_rank0(lambda: Store(output, cfg, metadata))
    plan = on_rank0(lambda: store.plan(len(conds)))

    per_segment = proto["decorrelation_steps"] + proto["segment_steps"]
    total = sum(
        (0 if p["state"] is not None else proto["equilibration_steps"])
        + max(0, proto["segments"] - p["next_segment"]) * per_segment
        for p in plan
    )
    bar = None
    if rank0 and progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="step", desc=output.name, dynamic_ncols=True)
    def tick(n: int) -> None:
        # every rank polls and all agree, so that they unwind together (a rank left waiting in a
        # collective call would hang the job until the scheduler's SIGKILL)
        if stop_requested is not None and comm.allreduce(int(stop_requested()), op=MPI.MAX):
            raise StopRequested()
        if bar is not None:
            bar.update(n)

    written = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="actionmd-gen-") as tmp:
        structure = on_rank0(_structure_file, cfg, tmp)
        try:
            for c, cond in enumerate(conds):
                state = plan[c]["state"]
                comp_seed = _seed(cfg["seed"], c, SEED_COMPOSITION)
                if bar is not None:
                    bar.set_postfix_str(f"condition {c + 1}/{len(conds)} T={cond['temperature']:g} K")
                if state is None:
                    with Simulation(cfg, comm, structure) as sim:
                        sim.build(cond["composition"], comp_seed)
                        sim.check()
                        seeds = {"velocity": _seed(cfg["seed"], c, SEED_EQ_VELOCITY),
                                 "thermostat": _seed(cfg["seed"], c, SEED_EQ_THERMOSTAT),
                                 "composition": comp_seed}
                        sim.create_velocities(cond["temperature"], seeds["velocity"])
                        sim.thermalize(cond["temperature"], seeds["thermostat"],
                                       proto["equilibration_steps"], tick)
                        state = sim.state()
                        types = state.type
                        z = np.array([atomic_numbers[cfg["elements"][t - 1]] for t in types])
                        masses = sim.per_type_masses()[types - 1]
                        origin, cell = sim.cell()
                        ftm2v = float(sim.lmp.extract_global("ftm2v"))
                    on_rank0(lambda: store.write_condition(
                        c, cond, atomic_numbers=z, masses=masses, types=types, origin=origin, cell=cell,
                        seeds=seeds, equilibrated=state,
                        force_to_acceleration=units.force_to_acceleration(ftm2v)))
                for k in range(plan[c]["next_segment"], proto["segments"]):
                    seg_seed = _seed(cfg["seed"], c, SEED_SEGMENT, k)
                    with Simulation(cfg, comm, structure) as sim:
                        sim.build(cond["composition"], comp_seed)
                        sim.check()
                        sim.restore(state)
                        sim.thermalize(cond["temperature"], seg_seed, proto["decorrelation_steps"], tick)
                        frames = sim.record(proto["segment_steps"], proto["record_every"], tick)
                        masses = sim.per_type_masses()[state.type - 1]
                        origin, cell = sim.cell()
                        last = frames[-1]
                        state = State(x=last.x, v=last.v, image=last.image.astype(np.int32),
                                      type=state.type)
                    on_rank0(lambda: store.write_segment(
                        c, k, _segment_arrays(frames, origin, cell, masses, units, proto),
                        state, {"thermostat_seed": seg_seed, "n_frames": len(frames)}))
                    written += 1
                    if stop_after_segments is not None and written >= stop_after_segments:
                        return output
        finally:
            if bar is not None:
                bar.close()
    if rank0:  # also without a progress bar: the one line a batch log needs
        held = sum(max(p["next_segment"], proto["segments"]) for p in plan) if conds else 0
        print(f"{output}: {written} new segment(s) in {time.perf_counter() - t0:.1f} s; it holds {held} "
              f"segment(s) over {len(conds)} condition(s)"
              + ("" if written else f" (protocol.segments={proto['segments']} per condition asks for no more)"))
    return output
