/* actionmd LAMMPS plugin: fix actionmd, a long-stride integrator from a learned
 * mechanical action S(qbar, pbar) (Bigi, Spies & Ceriotti, arXiv:2508.01068).
 *
 *   fix ID all actionmd MODEL types El1 El2 ... [keyword value ...]
 *
 * One step solves q' = q + dS/dpbar, p' = p - dS/dqbar at the midpoint by Anderson
 * mixing or Newton-Krylov (fix_actionmd_solver.cpp). No libtorch headers here: the
 * model is reached through actionmd::ActionModel. */
#ifndef LMP_FIX_ACTIONMD_H
#define LMP_FIX_ACTIONMD_H

#include "fix.h"

#include <memory>
#include <cstdint>
#include <string>
#include <vector>

namespace actionmd {
class ActionModel;
}

namespace LAMMPS_NS {

class FixActionMD : public Fix {
 public:
  FixActionMD(class LAMMPS *, int, char **);
  ~FixActionMD() override;
  int setmask() override;
  void init() override;
  void setup(int) override;
  void initial_integrate(int) override;
  void final_integrate() override;
  void post_run() override;
  void reset_dt() override;
  double compute_vector(int) override;
  void write_restart(FILE *) override;
  void restart(char *) override;

  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

 private:
  std::unique_ptr<actionmd::ActionModel> model;
  std::string model_path, device;
  std::string heap_state = "unset";    // what set_heap_policy() last logged ("" = buffers kept)
  int node_ranks = 1;                  // ranks sharing this node's memory (for the malloc policy)
  std::vector<int> type_map;    // LAMMPS type -> model type id (index 0 unused)

  enum { MODE_ACTION, MODE_PREDICTOR } mode;
  double tol;                   // Angstrom
  int maxiter;                  // solver iterations per step (and as many again for the fallback)
  enum { SOLVER_ANDERSON, SOLVER_NEWTON } solver;
  int anderson_memory;          // past iterates Anderson mixing keeps
  bool newton_fallback;         // Newton finishes a step whose Anderson iteration stalled
  int krylov_max;               // GMRES iterations per Newton step (unrestarted)
  double krylov_rtol;           // GMRES target: max(0.1 tol, krylov_rtol |b|)
  bool onfail_warn;
  double skin;                  // Angstrom, edge-list margin for moving midpoints
  bool pair_forces;             // allow pair/bonded/kspace styles (their forces become half kicks)

  // Langevin thermostat (half O steps before and after the stride), optional
  bool langevin;
  double t_start, t_stop, damp;    // K, K, LAMMPS time units
  int seed;
  bool langevin_zero;              // remove the net momentum of the random kicks
  // The noise stream is keyed by a digest of the state the thermostatted run started from, so a
  // copy continued through write_data/read_data (step counter back at 0) draws new noise instead of
  // replaying the first steps'; restart files carry it, so read_restart continues the same stream.
  uint64_t noise_stream = 0;
  bool noise_stream_set = false;
  bigint noise_last_step = -1;     // the last step that drew noise
  void start_noise_stream();
  void langevin_half_step(int half);

  double fs_per_time;           // LAMMPS time unit -> fs
  double vel_to_model;          // LAMMPS velocity -> Angstrom/fs
  double stride;                // fs

  // per-step work arrays, size 3*(nlocal+nghost)
  int natoms_alloc;
  std::vector<double> q, p, dq, dp, gq, gp, vq, vp, hq, hp, minv, qbar_ref;
  // the model sees q - origin (the owned atoms' centre, fixed over a stride): float32 resolves a
  // coordinate to ~|q| 6e-8, which in a large box would exceed the solver's tolerance
  double origin[3] = {0.0, 0.0, 0.0};
  void set_origin(int nlocal, int natoms);
  std::vector<int64_t> types_model, edges;

  // communication
  enum { COMM_P, COMM_X, COMM_V, COMM_G, COMM_H } comm_mode;

  // statistics for compute_vector
  double last_iter, last_residual, last_evals, last_rebuilds, last_fallbacks;

  // wall-clock seconds spent in the fix since the run started, on this rank (MPI_Wtime)
  enum { T_TOTAL, T_MODEL, T_COMM, T_EDGES, T_NTIMERS };
  double timers[T_NTIMERS];
  double run_iter, run_evals, run_fallbacks;    // solver iterations, action evaluations and
                                                // Newton fallbacks in this run
  bigint run_steps;              // steps taken in this run
  bigint run_first_step;         // update->firststep of the run the statistics belong to
  bool extrapolation_warned = false;    // the closest-pair warning is given once

  void half_kick();    // v += dt/2 * f/m: forces in f from other fixes (Strang splitting)

  void setup_units();
  void set_heap_policy();
  void check_ghost_cutoff(double extra, const char *when);
  void check_velocity_units();
  void check_step();
  void check_finite();
  void check_other_fixes();
  void spread_over_gpus(int node_rank);
  void watch_closest_pairs(int nlocal);
  void start_run_statistics();
  void grow(int natoms);
  void build_edges(int natoms);
  void forward(int which);
  void reverse(int which);
  void ensure_edges(int natoms);
  void solve(int nlocal, int natoms);
  double newton_step(int nlocal, int natoms, std::vector<double> &r, double res0);
  double scaled_residual(int nlocal, std::vector<double> &r);
  void pack_unknowns(int nlocal, std::vector<double> &u) const;
  void unpack_scaled(int nlocal, const std::vector<double> &u, std::vector<double> &a,
                     std::vector<double> &b) const;
  double eval_G(int nlocal, int natoms, bool keep_graph);
  void matvec(int nlocal, int natoms, const std::vector<double> &u, std::vector<double> &out);
  double residual_norm(int nlocal, const std::vector<double> &r);
  double dot(const std::vector<double> &a, const std::vector<double> &b);
  int gmres(int nlocal, int natoms, const std::vector<double> &b, std::vector<double> &x);
  void model_error(const std::exception &e, bool all);
};

}    // namespace LAMMPS_NS

#endif
