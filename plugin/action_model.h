/* actionmd LAMMPS plugin: engine-independent interface to a learned action.
 *
 * This header deliberately includes neither LAMMPS nor libtorch headers, so that
 * the fix and the solver compile quickly and a different backend (e.g. a .pt2
 * loader) can be added by implementing ActionModel.
 *
 * Units everywhere in this interface are the model-file units: positions in
 * Angstrom, momenta in u*Angstrom/fs, action in u*Angstrom^2/fs, time in fs. */
#ifndef ACTIONMD_ACTION_MODEL_H
#define ACTIONMD_ACTION_MODEL_H

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace actionmd {

// Any problem with a model file or a model evaluation; the message names the
// problem and, where possible, the fix. The LAMMPS side turns it into an error.
class ModelError : public std::runtime_error {
 public:
  explicit ModelError(const std::string &msg) : std::runtime_error(msg) {}
};

// Contents of actionmd.json (format_version 1).
struct ModelMetadata {
  int format_version = 0;
  std::vector<int> species;    // atomic numbers; index = model type id
  std::vector<double> masses;  // u, one per species
  double stride = 0.0;         // fs
  double cutoff = 0.0;         // Angstrom
  double interaction_range = 0.0;  // Angstrom
  std::string dtype;           // "float32" or "float64"
  bool has_predictor = false;
  bool time_reversible = false;
  std::string description;
  bool learned = false;        // architecture.name is actionmd.models.ActionNet: made by actionmd train
  bool translation_invariant = false;    // S depends on relative positions only: the origin may move
  // training_range.closest_pair by model type ids [a][b] (Angstrom; 0 where the data held no such pair):
  // the smallest distance of each species pair in the training data (python/actionmd/extrapolation.py)
  std::vector<std::vector<double>> closest_pair;
};

// Parse and validate the JSON text of actionmd.json; throws ModelError.
// `origin` names the file in messages. Implemented in metadata.cpp.
ModelMetadata parse_metadata(const std::string &json_text, const std::string &origin);

// A loaded action model. Typical use per solver iteration:
//   set_graph(...) once per edge-list rebuild,
//   evaluate(...) at the current midpoint (keeps the autograd graph),
//   any number of hvp(...) calls reusing that graph.
class ActionModel {
 public:
  virtual ~ActionModel() = default;
  virtual const ModelMetadata &metadata() const = 0;

  // Whether evaluate() and predict() skip the work that only ghost atoms' outputs need (the file
  // has the optional forward_owned() and predict_owned(), docs/model-format.md).
  virtual bool has_owned_methods() const = 0;

  // Atoms are numbered 0..natoms-1; the first nsum of them are the ones whose
  // contributions are summed (the atoms this process owns).
  // types: natoms model type ids; edges: 2*E ints, edges[0..E) sources and
  // edges[E..2E) targets (full list, both directions); shifts are zero.
  virtual void set_graph(int natoms, const std::vector<int64_t> &types,
                         const std::vector<int64_t> &edges) = 0;

  // Sum of the first nsum per-atom contributions at (qbar, pbar) (natoms*3
  // each), and its gradients for all natoms atoms (gq, gp: natoms*3 each). A model with the
  // optional forward_owned() computes only what those nsum contributions depend on.
  // keep_graph: keep what hvp() needs (a double-backward graph, dearer to build).
  virtual double evaluate(int nsum, const double *qbar, const double *pbar, double *gq,
                          double *gp, bool keep_graph) = 0;

  // Hessian of the last evaluate(keep_graph = true)'s sum times (vq, vp): hq = d/dqbar (gq.vq +
  // gp.vp), etc.
  virtual void hvp(const double *vq, const double *vp, double *hq, double *hp) = 0;

  // Direct prediction (delta_q, delta_p) from the start-of-step state for the first nowned atoms
  // (rows beyond them are left unspecified); only if metadata().has_predictor. Uses the graph of
  // the last set_graph().
  virtual void predict(int nowned, const double *q, const double *p, double *dq, double *dp) = 0;
};

// Load a model file. `device` is "cpu" or "cuda" (or "cuda:N"). Throws ModelError.
// Implemented in torchscript_model.cpp (the only file that includes libtorch).
std::unique_ptr<ActionModel> load_torchscript_model(const std::string &path,
                                                    const std::string &device);

// CUDA devices this libtorch can use (0 for a CPU-only libtorch).
int cuda_device_count();

}  // namespace actionmd

#endif
