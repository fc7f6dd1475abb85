/* actionmd LAMMPS plugin: the edge list fix actionmd hands the model (see fix_actionmd.h). */
#include "fix_actionmd.h"

#include "action_model.h"
#include "timed.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "update.h"

#include "elements.h"

#include <algorithm>
#include <cmath>
#include <vector>

using namespace LAMMPS_NS;
using actionmd::Timed;

namespace {
constexpr double EXTRAPOLATION_MARGIN = 0.95;    // as actionmd.extrapolation.MARGIN
}    // namespace

// Full edge list (both directions) of all pairs closer than cutoff + skin at qbar_ref, centred on
// the atoms that can matter. Only local atoms' outputs are used, and an atom's output depends on edges
// centred within interaction_range - cutoff of it (message passing aggregates at the centre), so on a
// small subdomain most of the ghost shell needs no edges of its own: skipping them is exact.
void FixActionMD::build_edges(int natoms)
{
  Timed timed(timers[T_EDGES]);
  const double rc = model->metadata().cutoff + skin;
  const double rc2 = rc * rc;
  const double reach = model->metadata().interaction_range - model->metadata().cutoff + skin;
  const int nlocal = atom->nlocal;
  auto needed = [&](int i) {
    if (i < nlocal || domain->triclinic) return true;
    double d2 = 0.0;
    for (int k = 0; k < 3; ++k) {
      double x = qbar_ref[3 * i + k];
      double d = std::max({domain->sublo[k] - x, x - domain->subhi[k], 0.0});
      d2 += d * d;
    }
    return d2 <= reach * reach;
  };
  std::vector<int64_t> src, dst;
  if (natoms > 1) {
    double lo[3], hi[3];
    for (int k = 0; k < 3; ++k) lo[k] = hi[k] = qbar_ref[k];
    for (int i = 0; i < natoms; ++i)
      for (int k = 0; k < 3; ++k) {
        lo[k] = std::min(lo[k], qbar_ref[3 * i + k]);
        hi[k] = std::max(hi[k], qbar_ref[3 * i + k]);
      }
    // bins no smaller than rc, and not (many) more bins than atoms
    double binsize = rc;
    long nb[3];
    for (;;) {
      long total = 1;
      for (int k = 0; k < 3; ++k) {
        nb[k] = std::max(1L, static_cast<long>((hi[k] - lo[k]) / binsize));
        total *= nb[k];
      }
      if (total <= 8L * natoms + 27) break;
      binsize *= 1.5;
    }
    auto bin_of = [&](int i, int k) {
      long b = static_cast<long>((qbar_ref[3 * i + k] - lo[k]) / (hi[k] - lo[k] + 1e-300) * nb[k]);
      return std::min(std::max(b, 0L), nb[k] - 1);
    };
    std::vector<int> head(nb[0] * nb[1] * nb[2], -1), next(natoms, -1);
    std::vector<long> cell(natoms);
    for (int i = 0; i < natoms; ++i) {
      long c = (bin_of(i, 0) * nb[1] + bin_of(i, 1)) * nb[2] + bin_of(i, 2);
      cell[i] = c;
      next[i] = head[c];
      head[c] = i;
    }
    for (int i = 0; i < natoms; ++i) {
      if (!needed(i)) continue;
      long b0 = bin_of(i, 0), b1 = bin_of(i, 1), b2 = bin_of(i, 2);
      for (long x = std::max(0L, b0 - 1); x <= std::min(nb[0] - 1, b0 + 1); ++x)
        for (long y = std::max(0L, b1 - 1); y <= std::min(nb[1] - 1, b1 + 1); ++y)
          for (long z = std::max(0L, b2 - 1); z <= std::min(nb[2] - 1, b2 + 1); ++z)
            for (int j = head[(x * nb[1] + y) * nb[2] + z]; j >= 0; j = next[j]) {
              if (j == i) continue;
              double d2 = 0.0;
              for (int k = 0; k < 3; ++k) {
                double d = qbar_ref[3 * j + k] - qbar_ref[3 * i + k];
                d2 += d * d;
              }
              if (d2 < rc2) {
                src.push_back(i);
                dst.push_back(j);
              }
            }
    }
  }
  edges.clear();
  edges.insert(edges.end(), src.begin(), src.end());
  edges.insert(edges.end(), dst.begin(), dst.end());
  try {
    model->set_graph(natoms, types_model, edges);
  } catch (const std::exception &e) {
    model_error(e, false);
  }
  last_rebuilds += 1.0;
}

// Rebuild the edge list when some midpoint moved more than skin/2 since the last build.
void FixActionMD::ensure_edges(int natoms)
{
  const double lim2 = 0.25 * skin * skin;
  bool rebuild = false;
  {
    Timed t(timers[T_EDGES]);
    for (int i = 0; i < natoms && !rebuild; ++i) {
      double d2 = 0.0;
      for (int k = 0; k < 3; ++k) {
        double d = q[3 * i + k] + 0.5 * dq[3 * i + k] - qbar_ref[3 * i + k];
        d2 += d * d;
      }
      rebuild = d2 > lim2;
    }
  }
  if (rebuild) {
    for (int i = 0; i < 3 * natoms; ++i) qbar_ref[i] = q[i] + 0.5 * dq[i];
    build_edges(natoms);
  }
}

// Where the model extrapolates (python/actionmd/extrapolation.py): once per step until it happens, the
// closest owned pair relative to the closest pair of its species in the training data; below
// EXTRAPOLATION_MARGIN, rank 0 warns once, naming the atoms. Collective: called by every rank.
void FixActionMD::watch_closest_pairs(int nlocal)
{
  const auto &closest = model->metadata().closest_pair;
  struct {
    double ratio;
    int rank;
  } mine{HUGE_VAL, comm->me}, worst;
  double found[6] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};    // distance, limit, tag i, tag j, Z i, Z j
  const size_t nedges = edges.size() / 2;
  for (size_t e = 0; e < nedges; ++e) {
    const int i = static_cast<int>(edges[e]), j = static_cast<int>(edges[nedges + e]);
    if (i >= nlocal) continue;
    const double limit = closest[types_model[i]][types_model[j]];
    if (limit <= 0.0) continue;
    double d2 = 0.0;
    for (int k = 0; k < 3; ++k) {
      const double d = qbar_ref[3 * j + k] - qbar_ref[3 * i + k];
      d2 += d * d;
    }
    const double ratio = std::sqrt(d2) / limit;
    if (ratio < mine.ratio) {
      mine.ratio = ratio;
      const auto &species = model->metadata().species;
      found[0] = std::sqrt(d2);
      found[1] = limit;
      found[2] = atom->tag_enable ? atom->tag[i] : i;
      found[3] = atom->tag_enable ? atom->tag[j] : j;
      found[4] = species[types_model[i]];
      found[5] = species[types_model[j]];
    }
  }
  MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE_INT, MPI_MINLOC, world);
  if (!(worst.ratio < EXTRAPOLATION_MARGIN)) return;
  extrapolation_warned = true;
  MPI_Bcast(found, 6, MPI_DOUBLE, worst.rank, world);
  if (comm->me == 0)
    error->warning(FLERR,
                   "fix actionmd: step {}: atoms {} and {} are {:.3f} A apart, closer than any {}-{} pair in "
                   "the model's training data ({:.3f} A): the dynamics there is the network's extrapolation, "
                   "not physics (this warning is given once). Check the structure, or train with data that "
                   "covers such configurations",
                   update->ntimestep, static_cast<bigint>(found[2]), static_cast<bigint>(found[3]), found[0],
                   actionmd::element_symbol(static_cast<int>(std::min(found[4], found[5]))),
                   actionmd::element_symbol(static_cast<int>(std::max(found[4], found[5]))), found[1]);
}
