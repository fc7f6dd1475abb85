/* actionmd LAMMPS plugin: Anderson mixing on vectors distributed over MPI ranks (see anderson.h). */
#include "anderson.h"

#include <cmath>

namespace actionmd {

namespace {
// a column whose component orthogonal to the earlier kept columns has a relative squared norm below
// this is treated as dependent on them (angle ~1e-5 rad): the normal equations square the condition
constexpr double DEPENDENT = 1.0e-10;
}    // namespace

AndersonMixer::AndersonMixer(int memory, MPI_Comm comm) : memory_(memory), comm_(comm) {}

void AndersonMixer::update(std::vector<double> &x, const std::vector<double> &f)
{
  xs_.push_back(x);
  fs_.push_back(f);
  if (static_cast<int>(xs_.size()) > memory_ + 1) {
    xs_.erase(xs_.begin());
    fs_.erase(fs_.begin());
  }
  const size_t n = x.size();
  const int m = static_cast<int>(xs_.size()) - 1;
  std::vector<double> next(n);
  for (size_t i = 0; i < n; ++i) next[i] = x[i] + f[i];
  if (m > 0) {
    // dF^T dF and dF^T f, reduced together
    std::vector<double> local(m * m + m, 0.0), global(m * m + m, 0.0);
    for (int k = 0; k < m; ++k)
      for (size_t i = 0; i < n; ++i) {
        double dfk = fs_[k + 1][i] - fs_[k][i];
        local[m * m + k] += dfk * f[i];
        for (int l = 0; l <= k; ++l) local[k * m + l] += dfk * (fs_[l + 1][i] - fs_[l][i]);
      }
    MPI_Allreduce(local.data(), global.data(), m * m + m, MPI_DOUBLE, MPI_SUM, comm_);
    for (int k = 0; k < m; ++k)
      for (int l = 0; l < k; ++l) global[l * m + k] = global[k * m + l];
    std::vector<double> a(global.begin(), global.begin() + m * m), b(global.begin() + m * m, global.end());
    std::vector<double> gamma = solve_normal_equations(a, b, m);
    for (int k = 0; k < m; ++k) {
      if (gamma[k] == 0.0) continue;
      for (size_t i = 0; i < n; ++i)
        next[i] -= gamma[k] * (xs_[k + 1][i] - xs_[k][i] + fs_[k + 1][i] - fs_[k][i]);
    }
  }
  x.swap(next);
}

std::vector<double> solve_normal_equations(std::vector<double> a, std::vector<double> b, int m)
{
  std::vector<double> l(m * m, 0.0), y(m, 0.0), gamma(m, 0.0);
  std::vector<char> kept(m, 0);
  for (int j = 0; j < m; ++j) {
    double d = a[j * m + j];
    for (int k = 0; k < j; ++k)
      if (kept[k]) d -= l[j * m + k] * l[j * m + k];
    if (!(a[j * m + j] > 0.0) || !(d > DEPENDENT * a[j * m + j])) continue;
    kept[j] = 1;
    l[j * m + j] = std::sqrt(d);
    for (int i = j + 1; i < m; ++i) {
      double s = a[i * m + j];
      for (int k = 0; k < j; ++k)
        if (kept[k]) s -= l[i * m + k] * l[j * m + k];
      l[i * m + j] = s / l[j * m + j];
    }
  }
  for (int j = 0; j < m; ++j) {    // L y = b
    if (!kept[j]) continue;
    double s = b[j];
    for (int k = 0; k < j; ++k)
      if (kept[k]) s -= l[j * m + k] * y[k];
    y[j] = s / l[j * m + j];
  }
  for (int j = m - 1; j >= 0; --j) {    // L^T gamma = y
    if (!kept[j]) continue;
    double s = y[j];
    for (int k = j + 1; k < m; ++k)
      if (kept[k]) s -= l[k * m + j] * gamma[k];
    gamma[j] = s / l[j * m + j];
  }
  return gamma;
}

}    // namespace actionmd
