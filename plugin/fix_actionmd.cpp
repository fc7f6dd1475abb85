/* actionmd LAMMPS plugin: fix actionmd (see fix_actionmd.h and docs/lammps.md). */
#include "fix_actionmd.h"

#include "action_model.h"
#include "elements.h"
#include "heap_policy.h"
#include "timed.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "modify.h"
#include "neighbor.h"
#include "update.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>

using namespace LAMMPS_NS;
using namespace FixConst;
using actionmd::Timed;

namespace {
constexpr double MASS_RTOL = 1.0e-6;    // relative mass mismatch tolerated (as ActionMap)
constexpr double DT_RTOL = 1.0e-9;      // relative timestep/stride mismatch tolerated
constexpr double MAX_KINETIC_TEMPERATURE = 1.0e5;    // K: beyond it, velocities in the wrong unit style
constexpr double FLOAT32_TOL_FLOOR = 1.0e-6;    // float32 gradients are round-off below (as ActionMap)
}    // namespace

/* ---------------------------------------------------------------------- */

FixActionMD::FixActionMD(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), mode(MODE_ACTION), tol(-1.0), maxiter(50), solver(SOLVER_ANDERSON),
    anderson_memory(8), newton_fallback(true), krylov_max(40),
    krylov_rtol(1.0e-6), onfail_warn(false), skin(1.0), pair_forces(false), langevin(false), t_start(0.0),
    t_stop(0.0), damp(0.0), seed(0), langevin_zero(true), fs_per_time(1.0), vel_to_model(1.0), stride(0.0),
    natoms_alloc(0), comm_mode(COMM_X), last_iter(0.0), last_residual(0.0), last_evals(0.0),
    last_rebuilds(0.0), last_fallbacks(0.0), timers{0.0, 0.0, 0.0, 0.0}, run_iter(0.0), run_evals(0.0),
    run_fallbacks(0.0), run_steps(0), run_first_step(-1)
{
  if (narg < 4)
    error->all(FLERR, "Illegal fix actionmd command: expected 'fix ID all actionmd MODEL types "
                      "El1 El2 ... [keyword value ...]'");
  if (igroup != 0)
    error->all(FLERR, "fix actionmd must be applied to group all: the action couples all atoms "
                      "(got group {})",
               arg[1]);

  time_integrate = 1;
  vector_flag = 1;
  size_vector = 4 + T_NTIMERS + 1;    // statistics of the last step, then timers (see docs)
  global_freq = 1;
  extvector = 0;
  comm_forward = 6;
  comm_reverse = 6;

  model_path = arg[3];
  if (model_path == "types")
    error->all(FLERR, "fix actionmd: the model file comes first: 'fix ID all actionmd MODEL types El1 "
                      "El2 ...'");
  if (domain->dimension != 3)
    error->all(FLERR, "fix actionmd needs a 3d system (dimension 3): its models are trained in 3d");
  device = "cpu";
  std::vector<std::string> symbols;

  auto need = [&](int iarg, int n, const char *kw) {
    if (iarg + n >= narg)
      error->all(FLERR, "fix actionmd: keyword '{}' needs {} value(s) but the command ends there",
                 kw, n);
  };

  int iarg = 4;
  std::set<std::string> given;    // a keyword twice would silently take its last value
  while (iarg < narg) {
    std::string kw = arg[iarg];
    if (kw != "types" && !given.insert(kw).second)
      error->all(FLERR, "fix actionmd: keyword '{}' is given twice; give it once", kw);
    if (kw == "types") {
      if (!symbols.empty())
        error->all(FLERR, "fix actionmd: keyword 'types' is given twice; give it once, with one "
                          "element per atom type");
      int ntypes = atom->ntypes;
      need(iarg, ntypes, "types");
      for (int t = 1; t <= ntypes; ++t) {
        std::string sym = arg[iarg + t];
        if (sym != "NULL" && actionmd::atomic_number(sym) == 0)
          error->all(FLERR,
                     "fix actionmd: '{}' given for atom type {} is not a chemical symbol (types "
                     "needs one element symbol, e.g. Cu, or NULL, per atom type; this system has "
                     "{} atom types)",
                     sym, t, ntypes);
        symbols.push_back(sym);
      }
      iarg += ntypes + 1;
    } else if (kw == "tol") {
      need(iarg, 1, "tol");
      tol = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (!(tol > 0.0)) error->all(FLERR, "fix actionmd: tol must be > 0 (Angstrom), got {}", tol);
      iarg += 2;
    } else if (kw == "maxiter") {
      need(iarg, 1, "maxiter");
      maxiter = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (maxiter < 1) error->all(FLERR, "fix actionmd: maxiter must be >= 1, got {}", maxiter);
      iarg += 2;
    } else if (kw == "solver") {
      need(iarg, 1, "solver");
      std::string v = arg[iarg + 1];
      if (v == "anderson")
        solver = SOLVER_ANDERSON;
      else if (v == "newton")
        solver = SOLVER_NEWTON;
      else
        error->all(FLERR, "fix actionmd: solver must be 'anderson' or 'newton', got '{}'", v);
      iarg += 2;
    } else if (kw == "memory") {
      need(iarg, 1, "memory");
      anderson_memory = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (anderson_memory < 1)
        error->all(FLERR, "fix actionmd: memory must be >= 1 (past iterates kept by Anderson "
                          "mixing), got {}", anderson_memory);
      iarg += 2;
    } else if (kw == "fallback") {
      need(iarg, 1, "fallback");
      newton_fallback = utils::logical(FLERR, arg[iarg + 1], false, lmp) == 1;
      iarg += 2;
    } else if (kw == "mode") {
      need(iarg, 1, "mode");
      std::string v = arg[iarg + 1];
      if (v == "action")
        mode = MODE_ACTION;
      else if (v == "predictor")
        mode = MODE_PREDICTOR;
      else
        error->all(FLERR, "fix actionmd: mode must be 'action' or 'predictor', got '{}'", v);
      iarg += 2;
    } else if (kw == "device") {
      need(iarg, 1, "device");
      device = arg[iarg + 1];
      bool cuda_index = device.size() > 5 && device.compare(0, 5, "cuda:") == 0 &&
          device.find_first_not_of("0123456789", 5) == std::string::npos;
      if (device != "cpu" && device != "cuda" && !cuda_index)
        error->all(FLERR, "fix actionmd: device must be cpu, cuda or cuda:N, got '{}'", device);
      iarg += 2;
    } else if (kw == "onfail") {
      need(iarg, 1, "onfail");
      std::string v = arg[iarg + 1];
      if (v == "error")
        onfail_warn = false;
      else if (v == "warn")
        onfail_warn = true;
      else
        error->all(FLERR, "fix actionmd: onfail must be 'error' or 'warn', got '{}'", v);
      iarg += 2;
    } else if (kw == "skin") {
      need(iarg, 1, "skin");
      skin = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (!(skin > 0.0))
        error->all(FLERR, "fix actionmd: skin must be > 0 (Angstrom), got {}", skin);
      iarg += 2;
    } else if (kw == "langevin") {
      need(iarg, 4, "langevin");
      langevin = true;
      t_start = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      t_stop = utils::numeric(FLERR, arg[iarg + 2], false, lmp);
      damp = utils::numeric(FLERR, arg[iarg + 3], false, lmp);
      seed = utils::inumeric(FLERR, arg[iarg + 4], false, lmp);
      if (t_start < 0.0 || t_stop < 0.0)
        error->all(FLERR, "fix actionmd: langevin temperatures must be >= 0 K, got {} {}",
                   t_start, t_stop);
      if (!(damp > 0.0))
        error->all(FLERR, "fix actionmd: langevin damp must be > 0 (time units), got {}", damp);
      if (seed <= 0) error->all(FLERR, "fix actionmd: langevin seed must be > 0, got {}", seed);
      if (!atom->tag_enable)
        error->all(FLERR, "fix actionmd: the langevin keyword needs atom IDs (its noise is a function "
                          "of each atom's ID): remove 'atom_modify id no', or use fix langevin");
      restart_global = 1;    // the noise stream (fix_actionmd_kicks.cpp)
      iarg += 5;
    } else if (kw == "pair_forces") {
      need(iarg, 1, "pair_forces");
      pair_forces = utils::logical(FLERR, arg[iarg + 1], false, lmp) == 1;
      iarg += 2;
    } else if (kw == "zero") {
      need(iarg, 1, "zero");
      langevin_zero = utils::logical(FLERR, arg[iarg + 1], false, lmp) == 1;
      iarg += 2;
    } else {
      error->all(FLERR,
                 "fix actionmd: unknown keyword '{}' (known: types, tol, maxiter, solver, memory, "
                 "fallback, mode, device, onfail, skin, langevin, zero, pair_forces)",
                 kw);
    }
  }
  if (symbols.empty())
    error->all(FLERR, "fix actionmd: the 'types' keyword is required: give the element of each "
                      "of the {} atom types, e.g. 'types Cu Ni'",
               atom->ntypes);

  actionmd::malloc_choice(error);    // a mistaken ACTIONMD_MALLOC fails here; init() applies it to each run
  MPI_Comm node;    // the ranks that share this node's memory (and its GPUs)
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &node_ranks);
  int node_rank = 0;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_free(&node);
  if (device == "cuda") spread_over_gpus(node_rank);
  try {
    model = actionmd::load_torchscript_model(model_path, device);
  } catch (const std::exception &e) {
    error->all(FLERR, "fix actionmd: {}", e.what());
  }
  const auto &meta = model->metadata();
  stride = meta.stride;
  if (tol < 0.0) tol = meta.dtype == "float32" ? 1.0e-5 : 1.0e-8;
  if (meta.dtype == "float32" && tol < FLOAT32_TOL_FLOOR && comm->me == 0)
    error->warning(FLERR, "fix actionmd: tol {} A is below what the float32 model {} resolves reliably "
                          "(~{} A; default 1e-5): its steps may fail to converge; use a float64 export "
                          "(actionmd export MODEL -o NEW.pt --dtype float64) for tighter solves",
                   tol, model_path, FLOAT32_TOL_FLOOR);
  if (mode == MODE_PREDICTOR && !meta.has_predictor)
    error->all(FLERR, "fix actionmd: mode predictor needs a model with a predictor, but {} has "
                      "none (has_predictor is false); use mode action",
               model_path);

  type_map.assign(atom->ntypes + 1, -1);
  for (int t = 1; t <= atom->ntypes; ++t) {
    const std::string &sym = symbols[t - 1];
    if (sym == "NULL") continue;
    int z = actionmd::atomic_number(sym);
    auto it = std::find(meta.species.begin(), meta.species.end(), z);
    if (it == meta.species.end()) {
      std::string known;
      for (int s : meta.species) known += std::string(" ") + actionmd::element_symbol(s);
      error->all(FLERR, "fix actionmd: element {} (atom type {}) is not in model {}, which knows:{}",
                 sym, t, model_path, known);
    }
    type_map[t] = static_cast<int>(it - meta.species.begin());
  }

  if (comm->me == 0) {
    utils::logmesg(lmp,
                   "fix actionmd: model {} ({}, stride {} fs, cutoff {} A, interaction range {} "
                   "A, {}{}{})\n",
                   model_path, meta.dtype, meta.stride, meta.cutoff, meta.interaction_range,
                   meta.time_reversible ? "time-reversible" : "not time-reversible",
                   meta.has_predictor ? ", with predictor" : "",
                   model->has_owned_methods() ? ", owned-atom methods" : "");
    // a learned file exported before the owned-atom methods evaluates its ghosts' outputs too
    if (!model->has_owned_methods() && meta.learned)
      error->warning(FLERR, "fix actionmd: model {} has no forward_owned(), so every rank also "
                            "computes its ghost atoms' outputs (2-4x slower on small subdomains); "
                            "re-export it with 'actionmd export {} -o NEW.pt'",
                     model_path, model_path);
  }
}

FixActionMD::~FixActionMD() = default;

// 'device cuda' on a node with several GPUs: rank k of the node takes GPU k mod (GPUs), as LAMMPS's own
// GPU and KOKKOS packages do, instead of every rank piling onto GPU 0. 'device cuda:N' pins one GPU.
void FixActionMD::spread_over_gpus(int node_rank)
{
  const int gpus = actionmd::cuda_device_count();
  if (gpus <= 0) return;    // no usable GPU: loading the model says so
  device = fmt::format("cuda:{}", node_rank % gpus);
  if (comm->me == 0)
    utils::logmesg(lmp, "fix actionmd: {} rank(s) on this node share {} GPU(s): node rank k uses "
                        "cuda:k mod {}\n", node_ranks, gpus, gpus);
}

int FixActionMD::setmask()
{
  return INITIAL_INTEGRATE | FINAL_INTEGRATE;
}

/* ---------------------------------------------------------------------- */

void FixActionMD::setup_units()
{
  std::string units = update->unit_style;
  if (units == "metal") {
    fs_per_time = 1000.0;    // ps
    vel_to_model = 1.0e-3;   // A/ps -> A/fs
  } else if (units == "real") {
    fs_per_time = 1.0;
    vel_to_model = 1.0;
  } else if (units == "lj") {
    error->all(FLERR, "fix actionmd does not work with units lj: the model has physical units "
                      "(Angstrom, fs, u); use units metal or units real");
  } else {
    error->all(FLERR, "fix actionmd supports units metal and real, not units {}", units);
  }
}

// Whether malloc keeps libtorch's large buffers depends on the atoms per rank, which a script may change
// between runs (create_atoms after the fix, delete_atoms, read_restart): judged per run, logged on change.
void FixActionMD::set_heap_policy()
{
  const std::string state = device == "cpu"
      ? actionmd::keep_large_buffers(static_cast<double>(atom->natoms) / comm->nprocs, node_ranks, error)
      : "device " + device;
  if (state == heap_state) return;
  heap_state = state;
  if (comm->me != 0) return;
  if (state.empty())
    utils::logmesg(lmp, "fix actionmd: glibc malloc keeps buffers up to 1 GB in the heap "
                        "(ACTIONMD_MALLOC=default to leave it alone)\n");
  else
    utils::logmesg(lmp, "fix actionmd: malloc left alone ({})\n", state);
}

void FixActionMD::init()
{
  setup_units();
  const auto &meta = model->metadata();
  set_heap_policy();

  double dt_fs = update->dt * fs_per_time;
  if (std::fabs(dt_fs - stride) > DT_RTOL * stride)
    error->all(FLERR,
               "fix actionmd: timestep {} ({} units, = {} fs) does not match the model stride {} "
               "fs (= {} in {} units); use 'timestep {}'",
               update->dt, update->unit_style, dt_fs, stride, stride / fs_per_time,
               update->unit_style, stride / fs_per_time);

  if (utils::strmatch(update->integrate_style, "^respa"))
    error->all(FLERR, "fix actionmd cannot be used with run_style respa");
  if (update->whichflag == 2 && !pair_forces)
    error->all(FLERR, "fix {} (actionmd) is defined during minimize, which it cannot drive: the learned "
                      "action gives the minimizer no energy or forces ({} would stop at once); 'unfix {}' "
                      "and minimize with the reference potential, then define the fix again",
               id, force->pair_style ? force->pair_style : "no pair style", id);

  // Forces in f (other fixes, and pair/bonded/kspace styles if allowed) are applied as half
  // kicks around the map. The learned action already describes the interactions, so a real
  // pair style (or bonded/kspace style) would count them twice: an error unless pair_forces yes.
  if (!pair_forces) {
    if (force->pair_style && strcmp(force->pair_style, "zero") != 0 &&
        strcmp(force->pair_style, "none") != 0)
      error->all(FLERR,
                 "fix {} (actionmd): pair_style {} is defined, but fix actionmd applies all forces "
                 "in f as half kicks around the learned action, which already describes the "
                 "interactions, so they would be counted twice; use 'pair_style zero RC' (RC = a "
                 "cutoff for the neighbour list) together with 'comm_modify cutoff', or add "
                 "'pair_forces yes' to fix {} if the pair style describes something the model "
                 "does not (to re-evaluate a dump under the reference potential with rerun, "
                 "'unfix {}' first)",
                 id, force->pair_style, id, id);
    auto real = [](const char *style) { return style && strcmp(style, "zero") != 0; };
    if ((force->bond && real(force->bond_style)) || (force->angle && real(force->angle_style)) ||
        (force->dihedral && real(force->dihedral_style)) ||
        (force->improper && real(force->improper_style)) || force->kspace)
      error->all(FLERR,
                 "fix {} (actionmd): bonded or kspace styles are defined, but fix actionmd applies "
                 "all forces in f as half kicks around the learned action, which already describes "
                 "the interactions, so they would be counted twice; remove them (bonded 'zero' "
                 "styles keep a topology without forces), or add 'pair_forces yes' to fix {} if they "
                 "describe something the model does not (before a rerun, 'unfix {}')",
                 id, id, id);
  }
  check_other_fixes();

  if (neighbor->every != 1 || neighbor->delay != 0)
    error->all(FLERR, "fix actionmd needs 'neigh_modify every 1 delay 0' (with 'check yes', the "
                      "default, to rebuild only when needed) so that the ghost atoms follow the long "
                      "strides (got every {} delay {})",
               neighbor->every, neighbor->delay);

  if (!atom->rmass) {
    for (int t = 1; t <= atom->ntypes; ++t) {
      if (type_map[t] < 0) continue;
      double mmodel = meta.masses[type_map[t]];
      if (!atom->mass_setflag[t] ||
          std::fabs(atom->mass[t] - mmodel) > MASS_RTOL * mmodel)
        error->all(FLERR,
                   "fix actionmd: mass of atom type {} ({}) is {} g/mol but model {} uses {} u; "
                   "use 'mass {} {}'",
                   t, actionmd::element_symbol(meta.species[type_map[t]]),
                   atom->mass_setflag[t] ? atom->mass[t] : 0.0, model_path, mmodel, t, mmodel);
    }
  }
}

// What other fixes may not, or should not, do beside fix actionmd.
void FixActionMD::check_other_fixes()
{
  for (int i = 0; i < modify->nfix; ++i) {
    Fix *other = modify->fix[i];
    // fix actionmd is the time integrator of all atoms: a second one would move them twice
    // (LAMMPS itself only warns)
    if (other != this && other->time_integrate)
      error->all(FLERR,
                 "fix {} (actionmd) is the time integrator of all atoms, but fix {} (style {}) "
                 "integrates atoms too, so they would be moved twice per step; remove fix {} "
                 "(use the 'langevin' keyword of fix actionmd or fix langevin for a thermostat)",
                 id, other->id, other->style, other->id);
    // no virial: LAMMPS's pressure is kinetic only, and a barostat reading it inflates the box
    if (utils::strmatch(other->style, "^press/") || utils::strmatch(other->style, "^box/relax"))
      error->all(FLERR,
                 "fix {} (actionmd) contributes no virial, so the pressure LAMMPS computes is the kinetic "
                 "part only, and fix {} (style {}) would drive the box with it; constant-pressure runs "
                 "are not supported: remove fix {}",
                 id, other->id, other->style, other->id);
    // constraint forces are solved for velocity Verlet's drift, which the learned map replaces
    if (utils::strmatch(other->style, "^shake") || utils::strmatch(other->style, "^rattle"))
      error->all(FLERR,
                 "fix {} (style {}) solves its constraint forces for the drift of velocity Verlet, but "
                 "fix {} (actionmd) moves the atoms by the learned map, so the constraints would not hold "
                 "(bond lengths drift off their targets); constraints are not supported: remove fix {} "
                 "(the action describes the flexible molecules of its training data)",
                 other->id, other->style, id, other->id);
    if (comm->me != 0) continue;
    if (langevin && utils::strmatch(other->style, "^langevin"))
      error->warning(FLERR, "fix {} (actionmd) has the langevin keyword and fix {} is a {} thermostat "
                            "too: the atoms are thermostatted twice (friction and noise add up)",
                     id, other->id, other->style);
    if (utils::strmatch(other->style, "^setforce") || utils::strmatch(other->style, "^aveforce"))
      error->warning(FLERR,
                     "fix {} (style {}) acts only on the forces in f, which fix {} (actionmd) applies as "
                     "half kicks around the learned map; the learned interactions still move the atoms, "
                     "so it cannot hold atoms in place",
                     other->id, other->style, id);
  }
}

// A kinetic temperature above MAX_KINETIC_TEMPERATURE is no molecular dynamics a model was trained for:
// almost always velocities in another unit style (a metal data file, Angstrom/ps, read under units real,
// Angstrom/fs, has them 1000x too large and its temperature 1e6x), where the ghost-cutoff advice that
// would follow only hides the cause.
void FixActionMD::check_velocity_units()
{
  double local[2] = {0.0, 0.0}, total[2];    // sum of m v^2, atoms
  for (int i = 0; i < atom->nlocal; ++i) {
    const double m = atom->rmass ? atom->rmass[i] : atom->mass[atom->type[i]];
    local[0] += m * (atom->v[i][0] * atom->v[i][0] + atom->v[i][1] * atom->v[i][1] + atom->v[i][2] * atom->v[i][2]);
    local[1] += 1.0;
  }
  MPI_Allreduce(local, total, 2, MPI_DOUBLE, MPI_SUM, world);
  if (total[1] == 0.0) return;
  const double temperature = force->mvv2e * total[0] / (3.0 * total[1] * force->boltz);
  if (temperature > MAX_KINETIC_TEMPERATURE)
    error->all(FLERR,
               "fix actionmd: the atoms' kinetic temperature is {:.3g} K: check that the velocities are in units "
               "{} (a metal data file read with units real has them 1000x too large, its temperature 1e6x)",
               temperature, update->unit_style);
}

void FixActionMD::check_ghost_cutoff(double extra, const char *when)
{
  const auto &meta = model->metadata();
  double cutghost = std::max(neighbor->cutneighmax, comm->cutghostuser);
  double need = meta.interaction_range + neighbor->skin + extra;
  if (cutghost < need)
    error->all(FLERR,
               "fix actionmd: the ghost-atom cutoff {:.4} A is too short {}: the model's "
               "interaction_range {} A + neighbor skin {} A + largest displacement in one stride "
               "{:.4} A = {:.4} A; use 'comm_modify cutoff {:.4}' or larger",
               cutghost, when, meta.interaction_range, neighbor->skin, extra, need,
               need + 1.0);
}

// Timers and run statistics count from the start of a run, with or without setup ('run ... pre no').
void FixActionMD::start_run_statistics()
{
  for (double &t : timers) t = 0.0;
  run_iter = run_evals = run_fallbacks = 0.0;
  run_steps = 0;
  run_first_step = update->firststep;
}

void FixActionMD::setup(int)
{
  start_run_statistics();

  check_finite();    // before the ghost cutoff, which an infinite velocity would make unsatisfiable
  // free-flight estimate of the largest displacement in one stride
  double vmax = 0.0, vmax_all = 0.0;
  for (int i = 0; i < atom->nlocal; ++i)
    vmax = std::max(vmax, std::sqrt(atom->v[i][0] * atom->v[i][0] + atom->v[i][1] * atom->v[i][1] +
                                    atom->v[i][2] * atom->v[i][2]));
  MPI_Allreduce(&vmax, &vmax_all, 1, MPI_DOUBLE, MPI_MAX, world);
  check_velocity_units();
  check_ghost_cutoff(vmax_all * update->dt, "for this model and these velocities");
  const auto &meta = model->metadata();
  int bad = 0, badtype = 0;
  double badmass = 0.0;
  for (int i = 0; i < atom->nlocal; ++i) {
    int t = atom->type[i];
    if (type_map[t] < 0) {
      bad = 1;
      badtype = t;
      break;
    }
    if (atom->rmass) {
      double mmodel = meta.masses[type_map[t]];
      if (std::fabs(atom->rmass[i] - mmodel) > MASS_RTOL * mmodel) {
        bad = 2;
        badtype = t;
        badmass = atom->rmass[i];
        break;
      }
    }
  }
  int anybad = 0;
  MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, world);
  if (bad == 1)
    error->one(FLERR, "fix actionmd: atoms of type {} are present but the type is NULL "
                      "(unmapped) in 'types'; give its element",
               badtype);
  if (bad == 2)
    error->one(FLERR, "fix actionmd: an atom of type {} has per-atom mass {} but the model uses {} u",
               badtype, badmass, meta.masses[type_map[badtype]]);
  if (anybad) error->all(FLERR, "fix actionmd: invalid atoms (see the message of another rank)");
}

// A timestep change is checked against the stride at the next step this fix takes (check_step), not
// here: a script may change the timestep in order to continue with another integrator after 'unfix'.
void FixActionMD::reset_dt() {}

// Per-step checks of what may change inside a run without init() (run ... pre no, fix dt/reset, a fix
// that sets a force to inf): the timestep and non-finite states. (Unmapped types that fix deposit may
// add are caught where initial_integrate maps the types.)
void FixActionMD::check_step()
{
  const double dt_fs = update->dt * fs_per_time;
  if (std::fabs(dt_fs - stride) > DT_RTOL * stride)
    error->all(FLERR,
               "fix actionmd: the timestep changed to {} ({} fs) during the run, but the model's "
               "stride is {} fs; use 'timestep {}' (fix dt/reset cannot be used with fix actionmd)",
               update->dt, dt_fs, stride, stride / fs_per_time);
  check_finite();
}

// Every owned atom's position and velocity is finite (a NaN or inf state is named, never integrated).
void FixActionMD::check_finite()
{
  double **x = atom->x, **v = atom->v;
  for (int i = 0; i < atom->nlocal; ++i)
    if (!std::isfinite(x[i][0] + x[i][1] + x[i][2] + v[i][0] + v[i][1] + v[i][2]))
      error->one(FLERR, "fix actionmd: atom {} has a non-finite position or velocity at step {} "
                        "(x = {} {} {}, v = {} {} {}): a force in f (another fix, or a pair style "
                        "with pair_forces yes) or the previous step made it so",
                 atom->tag_enable ? atom->tag[i] : i, update->ntimestep, x[i][0], x[i][1], x[i][2],
                 v[i][0], v[i][1], v[i][2]);
}

double FixActionMD::compute_vector(int n)
{
  switch (n) {
    case 0: return last_iter;
    case 1: return last_residual;
    case 2: return last_evals;
    case 3: return last_rebuilds;
    default: break;
  }
  // 4..8: cumulative seconds of this run, averaged over ranks (collective, like the computes
  // invoked by thermo): total in the fix, model, communication, edge list, rest of the solver
  if (n < 4 || n >= size_vector) return 0.0;
  double local = 0.0, sum = 0.0;
  const int k = n - 4;
  if (k < T_NTIMERS)
    local = timers[k];
  else
    local = timers[T_TOTAL] - timers[T_MODEL] - timers[T_COMM] - timers[T_EDGES];
  MPI_Allreduce(&local, &sum, 1, MPI_DOUBLE, MPI_SUM, world);
  return sum / comm->nprocs;
}

/* ----------------------------------------------------------------------
   per-atom work arrays (the edge list: fix_actionmd_edges.cpp; velocity kicks: fix_actionmd_kicks.cpp)
------------------------------------------------------------------------- */

void FixActionMD::grow(int natoms)
{
  size_t n3 = 3 * static_cast<size_t>(std::max(natoms, 1));
  for (auto *v : {&q, &p, &dq, &dp, &gq, &gp, &vq, &vp, &hq, &hp, &qbar_ref}) v->assign(n3, 0.0);
  minv.assign(std::max(natoms, 1), 0.0);
  types_model.assign(std::max(natoms, 1), 0);
  natoms_alloc = natoms;
}

void FixActionMD::model_error(const std::exception &e, bool all)
{
  if (all) error->all(FLERR, "fix actionmd: {}", e.what());
  error->one(FLERR, "fix actionmd (step {}): {}", update->ntimestep, e.what());
}

/* ----------------------------------------------------------------------
   communication: forward owned values to ghosts, reverse-sum ghost values
------------------------------------------------------------------------- */

void FixActionMD::forward(int which)
{
  Timed t(timers[T_COMM]);
  comm_mode = static_cast<decltype(comm_mode)>(which);
  comm->forward_comm(this, which == COMM_P ? 3 : 6);
}

void FixActionMD::reverse(int which)
{
  Timed t(timers[T_COMM]);
  comm_mode = static_cast<decltype(comm_mode)>(which);
  comm->reverse_comm(this, 6);
}

int FixActionMD::pack_forward_comm(int n, int *list, double *buf, int, int *)
{
  int m = 0;
  const double *a = comm_mode == COMM_P ? p.data() : comm_mode == COMM_X ? dq.data() : vq.data();
  const double *b = comm_mode == COMM_X ? dp.data() : vp.data();
  for (int ii = 0; ii < n; ++ii) {
    int j = list[ii];
    for (int k = 0; k < 3; ++k) buf[m++] = a[3 * j + k];
    if (comm_mode != COMM_P)
      for (int k = 0; k < 3; ++k) buf[m++] = b[3 * j + k];
  }
  return m;
}

void FixActionMD::unpack_forward_comm(int n, int first, double *buf)
{
  int m = 0;
  double *a = comm_mode == COMM_P ? p.data() : comm_mode == COMM_X ? dq.data() : vq.data();
  double *b = comm_mode == COMM_X ? dp.data() : vp.data();
  for (int i = first; i < first + n; ++i) {
    for (int k = 0; k < 3; ++k) a[3 * i + k] = buf[m++];
    if (comm_mode != COMM_P)
      for (int k = 0; k < 3; ++k) b[3 * i + k] = buf[m++];
  }
}

int FixActionMD::pack_reverse_comm(int n, int first, double *buf)
{
  int m = 0;
  const double *a = comm_mode == COMM_G ? gq.data() : hq.data();
  const double *b = comm_mode == COMM_G ? gp.data() : hp.data();
  for (int i = first; i < first + n; ++i) {
    for (int k = 0; k < 3; ++k) buf[m++] = a[3 * i + k];
    for (int k = 0; k < 3; ++k) buf[m++] = b[3 * i + k];
  }
  return m;
}

void FixActionMD::unpack_reverse_comm(int n, int *list, double *buf)
{
  int m = 0;
  double *a = comm_mode == COMM_G ? gq.data() : hq.data();
  double *b = comm_mode == COMM_G ? gp.data() : hp.data();
  for (int ii = 0; ii < n; ++ii) {
    int j = list[ii];
    for (int k = 0; k < 3; ++k) a[3 * j + k] += buf[m++];
    for (int k = 0; k < 3; ++k) b[3 * j + k] += buf[m++];
  }
}

// A translation-invariant model steps the same about any origin; about the owned atoms' centre its
// float32 coordinates stay within the rank's region (subdomain and ghost shell) instead of reaching the
// box size. A model tied to fixed sites (translation_invariant false) keeps LAMMPS's origin.
void FixActionMD::set_origin(int nlocal, int natoms)
{
  const int n = !model->metadata().translation_invariant ? 0 : nlocal > 0 ? nlocal : natoms;
  for (int k = 0; k < 3; ++k) {
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += q[3 * i + k];
    origin[k] = n > 0 ? sum / n : 0.0;
  }
}

// One step (Strang splitting, like velocity Verlet around the map):
//   initial_integrate: half kick with f(q) [forces of the previous step, or of setup()],
//                      [Langevin O half step], action map, [Langevin O half step]
//   final_integrate:   half kick with f(q') (computed by LAMMPS after initial_integrate)
void FixActionMD::initial_integrate(int)
{
  if (update->firststep != run_first_step) start_run_statistics();    // a run without setup (pre no)
  Timed timed_total(timers[T_TOTAL]);
  half_kick();
  if (langevin) langevin_half_step(0);
  double **x = atom->x;
  double **v = atom->v;
  const int nlocal = atom->nlocal;
  const int natoms = nlocal + atom->nghost;
  check_step();
  grow(natoms);
  last_evals = last_rebuilds = 0.0;

  for (int i = 0; i < natoms; ++i) {
    int t = atom->type[i];
    types_model[i] = type_map[t];
    if (types_model[i] < 0)
      error->one(FLERR, "fix actionmd: an atom of type {} (ID {}) appeared during the run, but the type "
                        "is NULL (unmapped) in 'types'; give its element",
                 t, atom->tag_enable ? atom->tag[i] : 0);
    for (int k = 0; k < 3; ++k) q[3 * i + k] = x[i][k];
  }
  set_origin(nlocal, natoms);
  for (int i = 0; i < nlocal; ++i) {
    double m = atom->rmass ? atom->rmass[i] : atom->mass[atom->type[i]];
    minv[i] = 1.0 / m;
    for (int k = 0; k < 3; ++k) p[3 * i + k] = m * v[i][k] * vel_to_model;
  }
  forward(COMM_P);

  // initial guess, and the first edge list
  const bool use_predictor = model->metadata().has_predictor;
  if (use_predictor) {
    for (int i = 0; i < 3 * natoms; ++i) qbar_ref[i] = q[i];
    build_edges(natoms);
    if (natoms > 0) {
      try {
        Timed t(timers[T_MODEL]);
        std::vector<double> q_local(q.begin(), q.begin() + 3 * natoms);
        for (int i = 0; i < 3 * natoms; ++i) q_local[i] -= origin[i % 3];
        model->predict(nlocal, q_local.data(), p.data(), dq.data(), dp.data());
      } catch (const std::exception &e) {
        model_error(e, false);
      }
    }
  } else {
    for (int i = 0; i < nlocal; ++i)
      for (int k = 0; k < 3; ++k) {
        dq[3 * i + k] = p[3 * i + k] * minv[i] * stride;
        dp[3 * i + k] = 0.0;
      }
    forward(COMM_X);
    for (int i = 0; i < 3 * natoms; ++i) qbar_ref[i] = q[i] + 0.5 * dq[i];
    build_edges(natoms);
  }
  if (!extrapolation_warned) watch_closest_pairs(nlocal);

  if (mode == MODE_ACTION) {
    solve(nlocal, natoms);
    // the step is G(x_k): exact momentum conservation for translation-invariant S
    for (int i = 0; i < nlocal; ++i)
      for (int k = 0; k < 3; ++k) {
        dq[3 * i + k] = gp[3 * i + k];
        dp[3 * i + k] = -gq[3 * i + k];
      }
  } else {
    last_iter = 0;
    last_residual = 0.0;
    last_fallbacks = 0.0;
  }

  // largest displacement: the ghost shell must have covered it
  double dmax = 0.0, dmax_all = 0.0;
  for (int i = 0; i < nlocal; ++i) {
    const double d = std::sqrt(dq[3 * i] * dq[3 * i] + dq[3 * i + 1] * dq[3 * i + 1] +
                               dq[3 * i + 2] * dq[3 * i + 2]);
    if (!(d <= dmax)) dmax = std::isnan(d) ? HUGE_VAL : d;    // NaN is never dropped
  }
  {
    Timed t(timers[T_COMM]);
    MPI_Allreduce(&dmax, &dmax_all, 1, MPI_DOUBLE, MPI_MAX, world);
  }
  check_ghost_cutoff(dmax_all, "for this step");

  for (int i = 0; i < nlocal; ++i)
    for (int k = 0; k < 3; ++k) {
      x[i][k] += dq[3 * i + k];
      v[i][k] = (p[3 * i + k] + dp[3 * i + k]) * minv[i] / vel_to_model;
    }
  if (langevin) langevin_half_step(1);
  run_steps += 1;
  run_iter += last_iter;
  run_evals += last_evals;
  run_fallbacks += last_fallbacks;
}

void FixActionMD::final_integrate()
{
  Timed timed_total(timers[T_TOTAL]);
  half_kick();
}

// Timing summary of the run, like LAMMPS's own: seconds averaged over ranks, the slowest
// rank, and the share of the fix's time. Printed by rank 0 (screen and log).
void FixActionMD::post_run()
{
  double local[T_NTIMERS + 1], sum[T_NTIMERS + 1], mx[T_NTIMERS + 1];
  for (int k = 0; k < T_NTIMERS; ++k) local[k] = timers[k];
  local[T_NTIMERS] = timers[T_TOTAL] - timers[T_MODEL] - timers[T_COMM] - timers[T_EDGES];
  MPI_Allreduce(local, sum, T_NTIMERS + 1, MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(local, mx, T_NTIMERS + 1, MPI_DOUBLE, MPI_MAX, world);
  if (comm->me != 0 || run_steps == 0) return;
  const double nprocs = comm->nprocs;
  const double total = sum[T_TOTAL] / nprocs;
  const double pct = total > 0.0 ? 100.0 / total : 0.0;
  std::string out = fmt::format(
      "fix {} (actionmd) timing: {} steps, {:.4g} s in the fix = {:.4g} s/step (average of {} "
      "rank(s)), {:.3g} {} iterations and {:.3g} action evaluations per step{}\n"
      "  Section  |  avg time  |  max time  | %fix\n",
      id, run_steps, total, total / static_cast<double>(run_steps), comm->nprocs,
      run_iter / static_cast<double>(run_steps), solver == SOLVER_NEWTON ? "Newton" : "Anderson",
      run_evals / static_cast<double>(run_steps),
      run_fallbacks > 0.0 ? fmt::format(" ({} step(s) finished by Newton)", run_fallbacks) : "");
  const char *names[] = {"Model", "Comm", "Edges", "Solver"};
  const int index[] = {T_MODEL, T_COMM, T_EDGES, T_NTIMERS};
  for (int s = 0; s < 4; ++s) {
    const int k = index[s];
    out += fmt::format("  {:<7}  | {:10.4g} | {:10.4g} | {:5.1f}\n", names[s], sum[k] / nprocs,
                       mx[k], sum[k] / nprocs * pct);
  }
  utils::logmesg(lmp, out);
}
