/* actionmd LAMMPS plugin: Anderson mixing on vectors distributed over MPI ranks. */
#ifndef ACTIONMD_ANDERSON_H
#define ACTIONMD_ANDERSON_H

#include <mpi.h>

#include <vector>

namespace actionmd {

// Type-II Anderson mixing for the fixed point x = G(x), each rank holding its slice of x:
//   x_next = x + f - (dX + dF) gamma,   gamma = argmin |dF gamma - f|,   f = G(x) - x,
// with dX, dF the differences of the last `memory` + 1 iterates (GMRES-like on linear problems). It
// needs gradients only, no Hessian-vector products. The small least-squares problem is solved from
// its normal equations, summed over ranks in one MPI_Allreduce, so every rank takes the same step.
class AndersonMixer {
 public:
  AndersonMixer(int memory, MPI_Comm comm);    // one per step: a new step starts without history
  // x: this rank's slice of the current iterate, f = G(x) - x there; x becomes the next iterate.
  void update(std::vector<double> &x, const std::vector<double> &f);

 private:
  int memory_;
  MPI_Comm comm_;
  std::vector<std::vector<double>> xs_, fs_;    // the last memory + 1 iterates and their f
};

// Least squares from normal equations A gamma = b (A symmetric, m x m, row-major) by a Cholesky
// factorisation that leaves out columns nearly dependent on the earlier ones (their gamma is 0).
std::vector<double> solve_normal_equations(std::vector<double> a, std::vector<double> b, int m);

}    // namespace actionmd

#endif
