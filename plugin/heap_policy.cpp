/* actionmd LAMMPS plugin: how glibc malloc treats libtorch's large buffers (see heap_policy.h). */
#include "heap_policy.h"

#include "error.h"

#include <climits>
#include <cstdlib>
#include <fstream>
#include <string>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <unistd.h>

using LAMMPS_NS::Error;

namespace {
// glibc maps every block above its mmap threshold (<= 32 MB) from the kernel and unmaps it on free, so
// each model evaluation of a few thousand atoms page-faults its per-edge buffers in again: 2-3x the
// time. Raising the thresholds keeps them in the heap at about twice the peak memory. ACTIONMD_MALLOC:
// auto (default) up to AUTO_MAX_ATOMS atoms per rank, keep, or default (never); the same policy as
// python/actionmd/allocator.py for ASE. Judged at every run's init, on the atoms the run has; auto also
// asks that the kept heaps of all ranks on the node fit in MEMORY_SHARE of the memory they may use.
constexpr double AUTO_MAX_ATOMS = 30000.0;
constexpr double KEPT_BYTES_PER_ATOM = 250000.0;    // kept peak ~0.2 MB per atom (LJ), with margin
constexpr double MEMORY_SHARE = 0.5;
constexpr int GLIBC_MMAP_THRESHOLD = 32 << 20;    // glibc's own threshold once grown (64-bit maximum)
bool heap_raised = false;    // this process raised the thresholds (process-wide, as the setting)

double physical_memory()
{
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<double>(pages) * page_size : 0.0;
}

// Bytes this process may use: the machine's memory, or less where a cgroup limits it (a batch job's --mem),
// the smallest limit on the way to the root (as actionmd.allocator.available_memory); 0 where unknown.
double available_memory()
{
  double memory = physical_memory();
  std::ifstream cgroups("/proc/self/cgroup");
  std::string line;
  while (std::getline(cgroups, line)) {
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string hierarchy = line.substr(0, first);
    const std::string controllers = "," + line.substr(first + 1, second - first - 1) + ",";
    std::string base, limit_file;
    if (hierarchy == "0" && controllers == ",,") {
      base = "/sys/fs/cgroup";    // cgroup v2
      limit_file = "memory.max";
    } else if (controllers.find(",memory,") != std::string::npos) {
      base = "/sys/fs/cgroup/memory";    // cgroup v1
      limit_file = "memory.limit_in_bytes";
    } else {
      continue;
    }
    std::string path = line.substr(second + 1);
    while (true) {
      std::ifstream limit_in(base + path + (path.empty() || path.back() != '/' ? "/" : "") + limit_file);
      std::string text;
      if (limit_in >> text && !text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
        const double limit = std::stod(text);    // "max" (v2) means no limit
        if (limit > 0.0 && (memory <= 0.0 || limit < memory)) memory = limit;
      }
      const auto slash = path.find_last_of('/');
      if (path.empty() || slash == std::string::npos) break;
      path = path.substr(0, slash);    // the parent cgroup ("" is the root)
    }
  }
  return memory;
}

// Why auto leaves malloc alone for this run, or "" if it may keep the buffers.
std::string auto_declines(double atoms_per_rank, int node_ranks)
{
  if (atoms_per_rank > AUTO_MAX_ATOMS)
    return fmt::format("{:.0f} atoms per rank > {:.0f}; ACTIONMD_MALLOC=keep trades ~2x memory for "
                       "~2x speed", atoms_per_rank, AUTO_MAX_ATOMS);
  const double memory = available_memory(), kept = node_ranks * atoms_per_rank * KEPT_BYTES_PER_ATOM;
  if (memory > 0.0 && kept > MEMORY_SHARE * memory)
    return fmt::format("{} rank(s) on this node x {:.0f} atoms would keep ~{:.1f} GB, more than {:.0f} % "
                       "of the {:.1f} GB they may use; ACTIONMD_MALLOC=keep overrides",
                       node_ranks, atoms_per_rank, kept / 1e9, 100.0 * MEMORY_SHARE, memory / 1e9);
  return "";
}

// Returns "" if the thresholds are raised, else why not. A rank that raised them for a small system
// and now holds a large one (auto) gets glibc's grown defaults back, so that new large buffers are
// mapped again instead of piling up in the heap.
}    // namespace

namespace actionmd {

std::string malloc_choice(Error *error)
{
  const char *env = std::getenv("ACTIONMD_MALLOC");
  const std::string choice = env && *env ? env : "auto";
  if (choice != "auto" && choice != "keep" && choice != "default")
    error->all(FLERR, "fix actionmd: ACTIONMD_MALLOC must be auto, keep or default (auto: keep "
                      "libtorch's large buffers in the heap for up to {} atoms per rank), got '{}'",
               AUTO_MAX_ATOMS, choice);
  return choice;
}

std::string keep_large_buffers(double atoms_per_rank, int node_ranks, Error *error)
{
  const std::string choice = malloc_choice(error);
  if (choice == "default") return "ACTIONMD_MALLOC=default";
  const std::string declined = choice == "auto" ? auto_declines(atoms_per_rank, node_ranks) : "";
  if (!declined.empty()) {
#ifdef __GLIBC__
    if (heap_raised) {
      mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD);
      mallopt(M_TRIM_THRESHOLD, 2 * GLIBC_MMAP_THRESHOLD);
      heap_raised = false;
    }
#endif
    return declined;
  }
#ifdef __GLIBC__
  heap_raised = mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
  if (heap_raised) return "";
#endif
  return "not glibc";
}
}    // namespace actionmd
