/* actionmd LAMMPS plugin: a scoped wall-clock timer for the fix's timing summary. */
#ifndef ACTIONMD_TIMED_H
#define ACTIONMD_TIMED_H

#include <mpi.h>

namespace actionmd {

// Adds the wall-clock seconds of its lifetime to a timer (MPI_Wtime: cheap, no synchronisation).
class Timed {
 public:
  explicit Timed(double &acc) : acc_(acc), t0_(MPI_Wtime()) {}
  ~Timed() { acc_ += MPI_Wtime() - t0_; }
  Timed(const Timed &) = delete;
  Timed &operator=(const Timed &) = delete;

 private:
  double &acc_;
  double t0_;
};

}    // namespace actionmd

#endif
