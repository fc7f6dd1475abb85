/* actionmd LAMMPS plugin: the TorchScript backend of ActionModel.
 * The only translation unit that includes libtorch headers. */
#include "action_model.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>

#include <cctype>
#include <fstream>

namespace actionmd {

namespace {

class TorchScriptModel : public ActionModel {
 public:
  TorchScriptModel(torch::jit::Module module, ModelMetadata meta, torch::Device device) :
      module_(std::move(module)), meta_(std::move(meta)), device_(device)
  {
    has_owned_forward_ = module_.find_method("forward_owned").has_value();
    has_owned_predict_ = module_.find_method("predict_owned").has_value();
    dtype_ = meta_.dtype == "float32" ? torch::kFloat32 : torch::kFloat64;
    module_.eval();
    // Inference only: parameters need no gradients; positions/momenta do.
    for (auto p : module_.parameters()) p.set_requires_grad(false);
  }

  const ModelMetadata &metadata() const override { return meta_; }

  bool has_owned_methods() const override
  {
    return has_owned_forward_ && (has_owned_predict_ || !meta_.has_predictor);
  }

  void set_graph(int natoms, const std::vector<int64_t> &types,
                 const std::vector<int64_t> &edges) override
  {
    natoms_ = natoms;
    const int64_t nedge = static_cast<int64_t>(edges.size() / 2);
    auto i64 = torch::TensorOptions().dtype(torch::kInt64);
    types_ = torch::from_blob(const_cast<int64_t *>(types.data()), {natoms}, i64)
                 .clone()
                 .to(device_);
    edges_ = torch::from_blob(const_cast<int64_t *>(edges.data()), {2, nedge}, i64)
                 .clone()
                 .to(device_);
    shifts_ = torch::zeros({nedge, 3}, torch::TensorOptions().dtype(dtype_).device(device_));
  }

  double evaluate(int nsum, const double *qbar, const double *pbar, double *gq,
                  double *gp, bool keep_graph) override
  {
    try {
      // grad mode is thread-local: a Python host may call LAMMPS inside torch.no_grad()
      torch::AutoGradMode enable_grad(true);
      qbar_ = to_tensor(qbar).requires_grad_(true);
      pbar_ = to_tensor(pbar).requires_grad_(true);
      // forward_owned computes only what the owned atoms' contributions depend on
      const bool owned = has_owned_forward_ && nsum < natoms_;
      const int64_t rows = owned ? nsum : natoms_;
      auto out = owned ? module_.get_method("forward_owned")(
                             {qbar_, pbar_, types_, edges_, shifts_, static_cast<int64_t>(nsum)})
                       : module_.forward({qbar_, pbar_, types_, edges_, shifts_});
      const char *name = owned ? "forward_owned()" : "forward()";
      if (!out.isTensor()) throw ModelError(std::string(name) + " must return a Tensor");
      auto per_atom = out.toTensor();
      if (per_atom.dim() != 1 || per_atom.size(0) != rows)
        throw ModelError(std::string(name) + " returned shape " + shape(per_atom) + ", expected [" +
                         std::to_string(rows) + "] (one action contribution per atom)");
      auto total = per_atom.narrow(0, 0, nsum).sum();
      auto g = torch::autograd::grad({total}, {qbar_, pbar_}, {}, /*retain_graph=*/keep_graph,
                                     /*create_graph=*/keep_graph, /*allow_unused=*/true);
      has_graph_ = keep_graph;
      gq_ = defined_or_zero(g[0], qbar_);
      gp_ = defined_or_zero(g[1], pbar_);
      from_tensor(gq_, gq);
      from_tensor(gp_, gp);
      return total.item<double>();
    } catch (const ModelError &) {
      throw;
    } catch (const std::exception &e) {
      throw ModelError(std::string("evaluating the action model failed: ") + e.what());
    }
  }

  void hvp(const double *vq, const double *vp, double *hq, double *hp) override
  {
    try {
      if (!has_graph_)
        throw ModelError("hvp() needs the graph of evaluate(..., keep_graph = true)");
      torch::AutoGradMode enable_grad(true);
      auto dot = (gq_ * to_tensor(vq)).sum() + (gp_ * to_tensor(vp)).sum();
      if (!dot.requires_grad()) {
        // Action linear in both arguments: Hessian is zero.
        std::fill(hq, hq + 3 * natoms_, 0.0);
        std::fill(hp, hp + 3 * natoms_, 0.0);
        return;
      }
      auto h = torch::autograd::grad({dot}, {qbar_, pbar_}, {}, /*retain_graph=*/true,
                                     /*create_graph=*/false, /*allow_unused=*/true);
      from_tensor(defined_or_zero(h[0], qbar_), hq);
      from_tensor(defined_or_zero(h[1], pbar_), hp);
    } catch (const std::exception &e) {
      throw ModelError(std::string("Hessian-vector product of the action model failed (is the "
                                   "model twice differentiable?): ") +
                       e.what());
    }
  }

  void predict(int nowned, const double *q, const double *p, double *dq, double *dp) override
  {
    try {
      // a predictor may differentiate internally (e.g. forces from a potential)
      torch::AutoGradMode enable_grad(true);
      if (!module_.find_method("predict")) throw ModelError("the model has no predict() method");
      const bool owned = has_owned_predict_ && nowned < natoms_;
      const int64_t rows = owned ? nowned : natoms_;
      auto out = owned ? module_.get_method("predict_owned")({to_tensor(q), to_tensor(p), types_,
                                                              edges_, shifts_,
                                                              static_cast<int64_t>(nowned)})
                       : module_.get_method("predict")({to_tensor(q), to_tensor(p), types_, edges_,
                                                        shifts_});
      const std::string name = owned ? "predict_owned()" : "predict()";
      if (!out.isTuple() || out.toTupleRef().elements().size() != 2)
        throw ModelError(name + " must return a tuple (delta_q, delta_p)");
      auto elems = out.toTupleRef().elements();
      for (int k = 0; k < 2; ++k) {
        auto t = elems[k].toTensor();
        if (t.dim() != 2 || t.size(0) != rows || t.size(1) != 3)
          throw ModelError(name + " returned shape " + shape(t) + ", expected [" +
                           std::to_string(rows) + ", 3]");
        from_tensor(t, k == 0 ? dq : dp);
      }
    } catch (const ModelError &) {
      throw;
    } catch (const std::exception &e) {
      throw ModelError(std::string("predict() of the action model failed: ") + e.what());
    }
  }

 private:
  torch::Tensor to_tensor(const double *data) const
  {
    auto t = torch::from_blob(const_cast<double *>(data), {natoms_, 3},
                              torch::TensorOptions().dtype(torch::kFloat64));
    return t.to(device_, dtype_, /*non_blocking=*/false, /*copy=*/true);
  }

  void from_tensor(const torch::Tensor &t, double *out) const
  {
    auto c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    std::copy(c.data_ptr<double>(), c.data_ptr<double>() + c.numel(), out);
  }

  static torch::Tensor defined_or_zero(const torch::Tensor &g, const torch::Tensor &like)
  {
    return g.defined() ? g : torch::zeros_like(like);
  }

  static std::string shape(const torch::Tensor &t)
  {
    std::string s = "[";
    for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
    return s + "]";
  }

  torch::jit::Module module_;
  ModelMetadata meta_;
  torch::Device device_;
  torch::Dtype dtype_;
  int64_t natoms_ = 0;
  bool has_graph_ = false;    // the last evaluate() kept the graph hvp() differentiates
  bool has_owned_forward_ = false, has_owned_predict_ = false;    // optional methods of the contract
  torch::Tensor types_, edges_, shifts_, qbar_, pbar_, gq_, gp_;
};

// What a model's code may do (docs/trust.md, the same rule as actionmd.model_file.check_operations):
// tensor maths of namespaces aten and prim, nothing that touches files or processes.
bool allowed_operator(const std::string &kind)
{
  const auto colons = kind.find("::");
  const std::string space = kind.substr(0, colons), name = kind.substr(colons + 2);
  if (space != "aten" && space != "prim") return false;
  for (const char *denied : {"aten::from_file", "aten::save", "prim::CallFunction", "prim::CallMethod",
                             "prim::PythonOp"})
    if (kind == denied) return false;
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char *word : {"file", "save", "load", "pickle", "system", "exec", "open"})
    if (lower.find(word) != std::string::npos) return false;
  return true;
}

void check_block(torch::jit::Block *block, const std::string &method, const std::string &path)
{
  for (auto *node : block->nodes()) {
    const std::string kind = node->kind().toQualString();
    if (!allowed_operator(kind))
      throw ModelError("model file " + path + ": " + method + "() uses the operator " + kind +
                       ", which an action model does not need (only tensor maths of namespaces aten and "
                       "prim, nothing that touches files or processes), so it is not run (docs/trust.md)");
    for (auto *inner : node->blocks()) check_block(inner, method, path);
  }
}

// Every operator the methods can reach, with every call inlined, before any of them runs.
void check_operations(const torch::jit::Module &module, const std::string &path)
{
  for (const auto &method : module.get_methods()) {
    auto graph = method.graph()->copy();
    torch::jit::Inline(*graph);
    check_block(graph->block(), method.name(), path);
  }
}

// Whether TorchScript source text defines __setstate__ ("def", blanks, the name).
bool defines_setstate(const std::string &code)
{
  static const std::string name = "__setstate__";
  for (auto at = code.find(name); at != std::string::npos; at = code.find(name, at + 1)) {
    auto k = at;
    while (k > 0 && std::isspace(static_cast<unsigned char>(code[k - 1]))) --k;
    if (k < at && k >= 3 && code.compare(k - 3, 3, "def") == 0 &&
        (k == 3 || !std::isalnum(static_cast<unsigned char>(code[k - 4]))))
      return true;
  }
  return false;
}

// TorchScript runs a class's __setstate__ inside torch::jit::load, before any check could see it: an
// archive whose code defines one is refused unread. An unreadable archive is left to load()'s error.
void check_code_before_loading(const std::string &path)
{
  std::vector<std::string> records;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
    records = reader->getAllRecords();
  } catch (const std::exception &) {
    return;
  }
  for (const auto &record : records) {
    if (record.rfind("code/", 0) != 0 || record.size() < 3 || record.compare(record.size() - 3, 3, ".py") != 0)
      continue;
    auto [data, size] = reader->getRecord(record);
    if (defines_setstate(std::string(static_cast<const char *>(data.get()), size)))
      throw ModelError("model file " + path + ": its code defines __setstate__, which TorchScript would run "
                       "while loading it; actionmd model files never do, so it is not loaded (docs/trust.md)");
  }
}

}    // namespace

int cuda_device_count()
{
  return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
}

std::unique_ptr<ActionModel> load_torchscript_model(const std::string &path,
                                                    const std::string &device_name)
{
  {
    std::ifstream f(path);
    if (!f.good())
      throw ModelError("cannot open model file '" + path + "': check the path (relative paths "
                       "are relative to the directory LAMMPS runs in)");
  }

  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(device_name);
  } catch (const std::exception &) {
    throw ModelError("unknown device '" + device_name + "': use cpu or cuda");
  }
  if (device.is_cuda() && !torch::cuda::is_available())
    throw ModelError("device " + device_name +
                     " requested but this libtorch has no usable CUDA device; use device cpu");
  if (device.is_cuda() && device.has_index() &&
      device.index() >= static_cast<int>(torch::cuda::device_count()))
    throw ModelError("device " + device_name + " requested but this node has " +
                     std::to_string(torch::cuda::device_count()) + " GPU(s) (cuda:0 .. cuda:" +
                     std::to_string(torch::cuda::device_count() - 1) + "); use device cuda to spread the "
                     "ranks over them");

  check_code_before_loading(path);
  torch::jit::ExtraFilesMap extra{{"actionmd.json", ""}};
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device, extra);
  } catch (const std::exception &e) {
    std::string what = e.what();
    auto nl = what.find('\n');
    if (nl != std::string::npos) what = what.substr(0, nl);
    throw ModelError("model file " + path + " is not a TorchScript archive that libtorch " +
                     std::string(TORCH_VERSION) + " can load (" + what +
                     "). Save the model with torch.jit.save(torch.jit.script(model), path, "
                     "_extra_files={'actionmd.json': ...})");
  }
  if (extra["actionmd.json"].empty())
    throw ModelError("model file " + path +
                     " has no actionmd.json extra file, so it is not an actionmd model. Save "
                     "it with torch.jit.save(..., _extra_files={'actionmd.json': json_text}) or "
                     "with actionmd's exporter");

  ModelMetadata meta = parse_metadata(extra["actionmd.json"], path);

  // the methods match the contract (same checks as actionmd.model_file.check_module)
  // the *_owned variants take the number of owned atoms as a sixth argument, an int
  auto check_method = [&](const char *name, const std::string &returns, bool owned = false) {
    auto method = module.find_method(name);
    const auto &schema = method->function().getSchema();
    std::string args;
    const size_t nargs = owned ? 7 : 6;    // self + 5 tensors (+ n_owned)
    bool ok = schema.arguments().size() == nargs;
    for (size_t a = 1; a < schema.arguments().size(); ++a) {
      const auto &arg = schema.arguments()[a];
      args += (a > 1 ? ", " : "") + arg.name() + ": " + arg.type()->str();
      ok = ok && arg.type()->str() == (owned && a == 6 ? "int" : "Tensor");
    }
    if (!ok)
      throw ModelError("model file " + path + ": " + name + "() must take five tensors (positions, "
                       "momenta, types, edge_index, edge_shifts)" + (owned ? " and an int n_owned" : "") +
                       ", found (" + args + ")");
    std::string got = schema.returns().size() == 1 ? schema.returns()[0].type()->str() : "?";
    if (got != returns)
      throw ModelError("model file " + path + ": " + name + "() must return " + returns +
                       ", found " + got);
  };
  if (!module.find_method("forward"))
    throw ModelError("model file " + path + " has no forward() method");
  check_method("forward", "Tensor");
  bool has_predict = module.find_method("predict").has_value();
  if (has_predict) check_method("predict", "(Tensor, Tensor)");
  if (module.find_method("forward_owned")) check_method("forward_owned", "Tensor", true);
  if (module.find_method("predict_owned")) {
    if (!has_predict)
      throw ModelError("model file " + path + " has predict_owned() but no predict(); export both");
    check_method("predict_owned", "(Tensor, Tensor)", true);
  }
  if (meta.has_predictor != has_predict)
    throw ModelError("model file " + path + ": actionmd.json says has_predictor=" +
                     (meta.has_predictor ? "true" : "false") + " but the module " +
                     (has_predict ? "has" : "has no") +
                     " exported predict() method; fix the metadata or re-export the model");
  const auto want = meta.dtype == "float32" ? torch::kFloat32 : torch::kFloat64;
  auto check_dtype = [&](const torch::Tensor &t) {
    if (t.is_floating_point() && t.scalar_type() != want)
      throw ModelError("model file " + path + ": actionmd.json dtype is " + meta.dtype +
                       " but the module holds " + std::string(c10::toString(t.scalar_type())) +
                       " tensors; convert the model with .to(torch." + meta.dtype +
                       ") before exporting");
  };
  for (const auto &t : module.parameters()) check_dtype(t);
  for (const auto &t : module.buffers()) check_dtype(t);
  check_operations(module, path);

  auto model = std::make_unique<TorchScriptModel>(std::move(module), std::move(meta), device);

  // Smoke test on two atoms of the first species, one edge pair each way, as both owned and as one
  // owned atom and a ghost: catches wrong dtypes, shapes or non-differentiable models at load time
  // instead of mid-run.
  try {
    const double d = 0.5 * model->metadata().cutoff;
    std::vector<double> q = {0.0, 0.0, 0.0, d, 0.0, 0.0}, p = {0.01, 0.0, 0.0, -0.01, 0.0, 0.0};
    std::vector<double> g1(6), g2(6), h1(6), h2(6);
    model->set_graph(2, {0, 0}, {0, 1, 1, 0});
    model->evaluate(2, q.data(), p.data(), g1.data(), g2.data(), /*keep_graph=*/true);
    model->hvp(p.data(), q.data(), h1.data(), h2.data());
    model->evaluate(1, q.data(), p.data(), g1.data(), g2.data(), /*keep_graph=*/false);
    if (model->metadata().has_predictor) {
      model->predict(2, q.data(), p.data(), h1.data(), h2.data());
      model->predict(1, q.data(), p.data(), h1.data(), h2.data());
    }
  } catch (const ModelError &e) {
    throw ModelError("model file " + path + " failed the load-time check on a two-atom system: " +
                     e.what());
  }
  return model;
}

}    // namespace actionmd
