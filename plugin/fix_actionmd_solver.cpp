/* actionmd LAMMPS plugin: the implicit solve of fix actionmd (see fix_actionmd.h, docs/lammps.md).
 *
 * Unknowns x = (dq, dp) of the owned atoms; G(x) = (dS/dpbar, -dS/dqbar) at the midpoint; residual
 * R = x - G(x). Anderson mixing (default) needs gradients only (it mixes G~, G with the kinetic
 * coupling in Gauss-Seidel order, as actionmd.solver); Newton-Krylov (GMRES on J = I - dG/dx,
 * Hessian-vector products by autograd) takes fewer, dearer iterations, and finishes a step whose
 * Anderson iteration stalled (fallback yes). The decisions mirror actionmd.solver in Python. */
#include "fix_actionmd.h"

#include "action_model.h"
#include "anderson.h"
#include "timed.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "update.h"

#include <algorithm>
#include <cmath>
#include <string>

using namespace LAMMPS_NS;
using actionmd::Timed;

namespace {
// onfail warn accepts near misses only: a residual beyond this (A) is an error anyway (as actionmd.solver)
constexpr double ONFAIL_WARN_LIMIT = 0.1;
}    // namespace

// Solve the step from the initial guess in (dq, dp); on return gq, gp hold G at the last iterate.
void FixActionMD::solve(int nlocal, int natoms)
{
  std::vector<double> r(6 * nlocal), x(6 * nlocal), best(6 * nlocal);
  bool newton = solver == SOLVER_NEWTON;
  bool fell_back = false;
  int iter = 0, limit = maxiter;
  eval_G(nlocal, natoms, newton);
  double res = scaled_residual(nlocal, r), best_res = HUGE_VAL;
  actionmd::AndersonMixer mixer(anderson_memory, world);
  for (;;) {
    if (!std::isfinite(res))    // never continue from NaN, whatever onfail says
      error->all(FLERR,
                 "fix actionmd: step {}: the action or its gradient is not finite after {} "
                 "solver iteration(s); the configuration is outside what the model describes "
                 "(overlapping atoms, wrong units or masses?)",
                 update->ntimestep, iter);
    if (res < best_res) {
      best_res = res;
      pack_unknowns(nlocal, best);
    }
    if (res <= tol) break;
    if (iter >= limit) {
      if (!newton && newton_fallback && !fell_back) {
        // Anderson stalled (stiff modes near half a period per stride): Newton from the best iterate
        newton = fell_back = true;
        limit += maxiter;
        unpack_scaled(nlocal, best, dq, dp);
        eval_G(nlocal, natoms, true);
        res = scaled_residual(nlocal, r);
        continue;
      }
      const std::string tried = fell_back
          ? fmt::format("{} anderson then {} newton", maxiter, iter - maxiter)
          : fmt::format("{} {}", iter, newton ? "newton" : "anderson");
      if (onfail_warn && res > ONFAIL_WARN_LIMIT)
        error->all(FLERR,
                   "fix actionmd: the implicit step did not converge at step {}: residual {:.3e} "
                   "A after {} iterations is beyond {} A, where the last iterate is not a step of "
                   "the model's map at all, so 'onfail warn' stops too; the configuration is outside "
                   "what the model describes (overlapping atoms, wrong units or masses?)",
                   update->ntimestep, res, tried, ONFAIL_WARN_LIMIT);
      if (!onfail_warn)
        error->all(FLERR,
                   "fix actionmd: the implicit step did not converge at step {}: residual {:.3e} "
                   "A > tol {:.3e} A after {} iterations (raise maxiter or tol, or use "
                   "'onfail warn' to continue with the last iterate)",
                   update->ntimestep, res, tol, tried);
      if (comm->me == 0)
        error->warning(FLERR, "fix actionmd: step {} not converged (residual {:.3e} A > tol "
                              "{:.3e} A after {} iterations); continuing",
                       update->ntimestep, res, tol, tried);
      break;
    }
    ++iter;
    if (newton) {
      res = newton_step(nlocal, natoms, r, res);
    } else {
      // x <- x + f - (dX + dF) gamma, f = G~(x) - x: the kinetic coupling in Gauss-Seidel order,
      // dp' = -dS/dqbar, then dq' = dS/dpbar + stride (dp' - dp) / 2m (scaled: f_q = -R_q - R_p / 2)
      pack_unknowns(nlocal, x);
      for (int i = 0; i < nlocal; ++i)
        for (int k = 0; k < 3; ++k) {
          r[6 * i + k] = -r[6 * i + k] - 0.5 * r[6 * i + 3 + k];
          r[6 * i + 3 + k] = -r[6 * i + 3 + k];
        }
      mixer.update(x, r);
      unpack_scaled(nlocal, x, dq, dp);
      eval_G(nlocal, natoms, false);
      res = scaled_residual(nlocal, r);
    }
  }
  last_iter = iter;
  last_residual = res;
  last_fallbacks = fell_back ? 1.0 : 0.0;
}

// One inexact Newton step by GMRES (on the graph of the current iterate), halved (at most five
// times) while the residual does not decrease. r holds the residual R of the iterate; returns |R|.
double FixActionMD::newton_step(int nlocal, int natoms, std::vector<double> &r, double res0)
{
  std::vector<double> delta, x0(6 * nlocal), x(6 * nlocal);
  for (auto &ri : r) ri = -ri;
  gmres(nlocal, natoms, r, delta);
  pack_unknowns(nlocal, x0);
  double res = res0, factor = 1.0;
  for (int trial = 0; trial < 6; ++trial, factor *= 0.5) {
    for (size_t i = 0; i < x.size(); ++i) x[i] = x0[i] + factor * delta[i];
    unpack_scaled(nlocal, x, dq, dp);
    eval_G(nlocal, natoms, true);
    res = scaled_residual(nlocal, r);
    if (res < res0) break;    // false for a non-finite residual
  }
  return res;
}

// R = x - G(x) of the owned atoms, scaled (every component in Angstrom); returns its max norm.
double FixActionMD::scaled_residual(int nlocal, std::vector<double> &r)
{
  for (int i = 0; i < nlocal; ++i) {
    double scale = stride * minv[i];
    for (int k = 0; k < 3; ++k) {
      r[6 * i + k] = dq[3 * i + k] - gp[3 * i + k];
      r[6 * i + 3 + k] = (dp[3 * i + k] + gq[3 * i + k]) * scale;
    }
  }
  return residual_norm(nlocal, r);
}

// The unknowns of the owned atoms in scaled form, u = (dq, dp * stride / m) per atom.
void FixActionMD::pack_unknowns(int nlocal, std::vector<double> &u) const
{
  for (int i = 0; i < nlocal; ++i) {
    double scale = stride * minv[i];
    for (int k = 0; k < 3; ++k) {
      u[6 * i + k] = dq[3 * i + k];
      u[6 * i + 3 + k] = dp[3 * i + k] * scale;
    }
  }
}

// Scaled per-atom 6-vectors u back to position-like and momentum-like parts (a, b), owned atoms.
void FixActionMD::unpack_scaled(int nlocal, const std::vector<double> &u, std::vector<double> &a,
                                std::vector<double> &b) const
{
  for (int i = 0; i < nlocal; ++i) {
    double unscale = 1.0 / (stride * minv[i]);
    for (int k = 0; k < 3; ++k) {
      a[3 * i + k] = u[6 * i + k];
      b[3 * i + k] = u[6 * i + 3 + k] * unscale;
    }
  }
}

// G(x) for the owned atoms at the current (dq, dp): gq <- dS/dqbar, gp <- dS/dpbar,
// summed over all copies of each owned atom.
double FixActionMD::eval_G(int nlocal, int natoms, bool keep_graph)
{
  forward(COMM_X);
  ensure_edges(natoms);
  std::vector<double> qbar(3 * natoms), pbar(3 * natoms);
  for (int i = 0; i < 3 * natoms; ++i) {
    qbar[i] = q[i] - origin[i % 3] + 0.5 * dq[i];
    pbar[i] = p[i] + 0.5 * dp[i];
  }
  double s = 0.0;
  last_evals += 1.0;
  if (natoms > 0) {
    try {
      Timed t(timers[T_MODEL]);
      s = model->evaluate(nlocal, qbar.data(), pbar.data(), gq.data(), gp.data(), keep_graph);
    } catch (const std::exception &e) {
      model_error(e, false);
    }
  }
  reverse(COMM_G);
  return s;
}

double FixActionMD::residual_norm(int nlocal, const std::vector<double> &r)
{
  double local = 0.0, global = 0.0;
  for (int i = 0; i < 6 * nlocal; ++i) {
    const double a = std::fabs(r[i]);
    if (!(a <= local)) local = std::isnan(a) ? HUGE_VAL : a;    // std::max would drop a NaN
  }
  Timed t(timers[T_COMM]);
  MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_MAX, world);
  return global;
}

double FixActionMD::dot(const std::vector<double> &a, const std::vector<double> &b)
{
  double local = 0.0, global = 0.0;
  for (size_t i = 0; i < a.size(); ++i) local += a[i] * b[i];
  Timed t(timers[T_COMM]);
  MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_SUM, world);
  return global;
}

// out = D J D^-1 u with J v = v - 0.5*(hp, -hq), (hq, hp) = Hessian * (v_q, v_p).
void FixActionMD::matvec(int nlocal, int natoms, const std::vector<double> &u,
                         std::vector<double> &out)
{
  unpack_scaled(nlocal, u, vq, vp);
  forward(COMM_V);
  if (natoms > 0) {
    try {
      Timed t(timers[T_MODEL]);
      model->hvp(vq.data(), vp.data(), hq.data(), hp.data());
    } catch (const std::exception &e) {
      model_error(e, false);
    }
  }
  reverse(COMM_H);
  for (int i = 0; i < nlocal; ++i) {
    double scale = stride * minv[i];
    for (int k = 0; k < 3; ++k) {
      out[6 * i + k] = vq[3 * i + k] - 0.5 * hp[3 * i + k];
      out[6 * i + 3 + k] = (vp[3 * i + k] + 0.5 * hq[3 * i + k]) * scale;
    }
  }
  last_evals += 1.0;
}

// Solve (D J D^-1) x = b by GMRES from x = 0 (no restart), relative tolerance krylov_rtol.
// All ranks take identical decisions (every reduction is global). Returns iterations.
int FixActionMD::gmres(int nlocal, int natoms, const std::vector<double> &b, std::vector<double> &x)
{
  const size_t n = b.size();
  const int m = krylov_max;
  x.assign(n, 0.0);
  double beta = std::sqrt(dot(b, b));
  if (beta == 0.0) return 0;
  const double target = std::max(0.1 * tol, krylov_rtol * beta);    // as the Python engine
  std::vector<std::vector<double>> V(1, b);
  for (auto &v : V[0]) v /= beta;
  std::vector<std::vector<double>> H(m + 1, std::vector<double>(m, 0.0));
  std::vector<double> cs(m, 0.0), sn(m, 0.0), g(m + 1, 0.0);
  g[0] = beta;
  int k = 0;
  std::vector<double> w(n);
  for (; k < m; ++k) {
    matvec(nlocal, natoms, V[k], w);
    for (int j = 0; j <= k; ++j) {    // modified Gram-Schmidt
      H[j][k] = dot(w, V[j]);
      for (size_t i = 0; i < n; ++i) w[i] -= H[j][k] * V[j][i];
    }
    H[k + 1][k] = std::sqrt(dot(w, w));
    for (int j = 0; j < k; ++j) {    // apply previous rotations
      double t = cs[j] * H[j][k] + sn[j] * H[j + 1][k];
      H[j + 1][k] = -sn[j] * H[j][k] + cs[j] * H[j + 1][k];
      H[j][k] = t;
    }
    double r = std::hypot(H[k][k], H[k + 1][k]);
    double hk1 = H[k + 1][k];
    cs[k] = r > 0.0 ? H[k][k] / r : 1.0;
    sn[k] = r > 0.0 ? hk1 / r : 0.0;
    H[k][k] = r;
    H[k + 1][k] = 0.0;
    g[k + 1] = -sn[k] * g[k];
    g[k] = cs[k] * g[k];
    bool done = std::fabs(g[k + 1]) <= target || hk1 <= 1e-14 * beta;
    if (!done && k + 1 < m) {
      V.emplace_back(w);
      for (auto &v : V.back()) v /= hk1;
    }
    if (done) {
      ++k;
      break;
    }
  }
  k = std::min(k, m);
  std::vector<double> y(k, 0.0);    // back substitution
  for (int i = k - 1; i >= 0; --i) {
    double s = g[i];
    for (int j = i + 1; j < k; ++j) s -= H[i][j] * y[j];
    y[i] = H[i][i] != 0.0 ? s / H[i][i] : 0.0;
  }
  for (int j = 0; j < k; ++j)
    for (size_t i = 0; i < n; ++i) x[i] += y[j] * V[j][i];
  return k;
}