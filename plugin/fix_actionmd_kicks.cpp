/* actionmd LAMMPS plugin: what fix actionmd does to velocities around the map (see fix_actionmd.h):
 * half kicks from the forces in f, and the Langevin O half steps with counter-based noise whose
 * stream is kept in restart files. */
#include "fix_actionmd.h"

#include "timed.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "update.h"
#include "utils.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

using namespace LAMMPS_NS;
using actionmd::Timed;

// splitmix64's finaliser: a well-mixed 64-bit hash.
static inline uint64_t mix64(uint64_t z)
{
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A standard normal that is a pure function of (seed, stream, timestep, half step, atom tag,
// component): the same on any number of ranks, in any atom order, and after a restart, which then
// continues exactly as if it had not stopped.
static double counter_normal(uint64_t seed, uint64_t stream, uint64_t step, int half, uint64_t tag, int k)
{
  uint64_t h = mix64(mix64(mix64(mix64(seed) ^ stream) ^ step) ^ (tag * 8 + half * 4 + static_cast<uint64_t>(k)));
  double u1 = static_cast<double>(h >> 11) * 0x1.0p-53;                // [0, 1)
  double u2 = static_cast<double>(mix64(h) >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(6.283185307179586 * u2);   // Box-Muller
}

static uint64_t bits(double x)
{
  uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// The stream is a digest of the state (atom IDs, positions, velocities) when the thermostat first acts,
// or again when the step counter goes back (read_data, reset_timestep): a sum of per-atom hashes, so
// independent of the rank count and the atom order.
void FixActionMD::start_noise_stream()
{
  double **x = atom->x;
  double **v = atom->v;
  uint64_t local = 0, total = 0;
  for (int i = 0; i < atom->nlocal; ++i) {
    uint64_t h = mix64(static_cast<uint64_t>(atom->tag[i]));
    for (int k = 0; k < 3; ++k) h = mix64(mix64(h ^ bits(x[i][k])) ^ bits(v[i][k]));
    local += h;
  }
  MPI_Allreduce(&local, &total, 1, MPI_UINT64_T, MPI_SUM, world);
  if (noise_stream_set && comm->me == 0)
    utils::logmesg(lmp, "fix {} (actionmd): the step counter went back from {} to {}; the Langevin noise "
                        "starts a new stream from the current state instead of repeating earlier steps' "
                        "noise\n", id, noise_last_step, update->ntimestep);
  noise_stream = total;
  noise_stream_set = true;
  noise_last_step = -1;
}

// Restart files carry the noise stream and the last step that drew noise (three 64-bit words).
void FixActionMD::write_restart(FILE *fp)
{
  if (comm->me != 0) return;
  const uint64_t words[3] = {0x61636d646e6f6973ULL, noise_stream,    // "acmdnois", a format tag
                             static_cast<uint64_t>(noise_stream_set ? noise_last_step : -2)};
  const int size = sizeof words;
  fwrite(&size, sizeof(int), 1, fp);
  fwrite(words, sizeof words, 1, fp);
}

void FixActionMD::restart(char *buf)
{
  uint64_t words[3];
  std::memcpy(words, buf, sizeof words);
  if (words[0] != 0x61636d646e6f6973ULL)
    error->all(FLERR, "fix {} (actionmd): the restart file's state for this fix is not a Langevin noise "
                      "stream; was it written by another version of fix actionmd?", id);
  const auto last = static_cast<bigint>(words[2]);
  if (last == -2) return;    // written before the thermostat ever acted
  noise_stream = words[1];
  noise_stream_set = true;
  noise_last_step = last;
}

// Ornstein-Uhlenbeck half step on the velocities of the owned atoms:
// v <- c v + sqrt((1 - c^2) kB T / m) xi, c = exp(-stride / (2 damp)). Target T ramps linearly
// from Tstart to Tstop over the run, like fix langevin. xi comes from counter_normal.
void FixActionMD::langevin_half_step(int half)
{
  double delta = 0.0;
  if (update->endstep > update->beginstep)
    delta = static_cast<double>(update->ntimestep - update->beginstep) /
        static_cast<double>(update->endstep - update->beginstep);
  const double temperature = t_start + delta * (t_stop - t_start);
  // both half steps of a step share its number: a first half at a step that already drew noise repeats
  const bool repeats = half == 0 ? update->ntimestep <= noise_last_step : update->ntimestep < noise_last_step;
  if (!noise_stream_set || repeats) start_noise_stream();
  noise_last_step = update->ntimestep;
  const double c = std::exp(-0.5 * update->dt / damp);
  // kB T / m in (LAMMPS velocity)^2: force->boltz is energy/K, mvv2e converts m v^2 to energy
  double **v = atom->v;
  const int nlocal = atom->nlocal;
  std::vector<double> kick(3 * nlocal);
  double local[4] = {0.0, 0.0, 0.0, 0.0}, total[4];    // sum of m*kick, total mass
  for (int i = 0; i < nlocal; ++i) {
    double m = atom->rmass ? atom->rmass[i] : atom->mass[atom->type[i]];
    double sigma = std::sqrt((1.0 - c * c) * force->boltz * temperature / (m * force->mvv2e));
    for (int k = 0; k < 3; ++k) {
      kick[3 * i + k] = sigma * counter_normal(static_cast<uint64_t>(seed), noise_stream, static_cast<uint64_t>(update->ntimestep),
                                               half, static_cast<uint64_t>(atom->tag[i]), k);
      local[k] += m * kick[3 * i + k];
    }
    local[3] += m;
  }
  double shift[3] = {0.0, 0.0, 0.0};
  if (langevin_zero) {    // kicks with zero net momentum (as fixcm in the Python engine)
    Timed t(timers[T_COMM]);
    MPI_Allreduce(local, total, 4, MPI_DOUBLE, MPI_SUM, world);
    if (total[3] > 0.0)
      for (int k = 0; k < 3; ++k) shift[k] = total[k] / total[3];
  }
  for (int i = 0; i < nlocal; ++i)
    for (int k = 0; k < 3; ++k) v[i][k] = c * v[i][k] + kick[3 * i + k] - shift[k];
}

// Half kick from the forces in f (other fixes; pair/bonded/kspace styles with pair_forces yes),
// as in fix nve: v += dt/2 * ftm2v * f/m. With zero forces this adds zeros (no change).
void FixActionMD::half_kick()
{
  const double dtf = 0.5 * update->dt * force->ftm2v;
  double **v = atom->v;
  double **f = atom->f;
  const int nlocal = atom->nlocal;
  if (atom->rmass) {
    const double *rmass = atom->rmass;
    for (int i = 0; i < nlocal; ++i) {
      const double dtfm = dtf / rmass[i];
      for (int k = 0; k < 3; ++k) v[i][k] += dtfm * f[i][k];
    }
  } else {
    const double *mass = atom->mass;
    const int *type = atom->type;
    for (int i = 0; i < nlocal; ++i) {
      const double dtfm = dtf / mass[type[i]];
      for (int k = 0; k < 3; ++k) v[i][k] += dtfm * f[i][k];
    }
  }
}
