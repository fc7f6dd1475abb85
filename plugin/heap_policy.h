/* actionmd LAMMPS plugin: the malloc policy for libtorch's large per-evaluation buffers.
   The same rule as python/actionmd/allocator.py (ASE), for one rank of a LAMMPS run. */
#ifndef ACTIONMD_HEAP_POLICY_H
#define ACTIONMD_HEAP_POLICY_H

#include <string>

namespace LAMMPS_NS {
class Error;
}

namespace actionmd {

// ACTIONMD_MALLOC (auto when unset); a value other than auto, keep or default is an error.
std::string malloc_choice(LAMMPS_NS::Error *error);

// Applies ACTIONMD_MALLOC (auto, keep or default) for a rank holding atoms_per_rank atoms, node_ranks
// ranks sharing its node. Returns "" if glibc now keeps buffers up to 1 GB in the heap, else why not.
std::string keep_large_buffers(double atoms_per_rank, int node_ranks, LAMMPS_NS::Error *error);

}    // namespace actionmd

#endif
