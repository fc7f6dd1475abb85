/* actionmd LAMMPS plugin: parsing and validation of actionmd.json (format_version 1). */
#include "action_model.h"

#include "json.h"    // LAMMPS ships nlohmann::json as LAMMPS_NS::json (namespace nlohmann_lmp)

#include <algorithm>
#include <cmath>

namespace actionmd {

using json = LAMMPS_NS::json;

namespace {

[[noreturn]] void fail(const std::string &origin, const std::string &what)
{
  throw ModelError("model file " + origin + ": " + what +
                   ". Re-export the model with actionmd's exporter, which writes a valid "
                   "actionmd.json (format_version 1)");
}

const json &require(const json &j, const char *key, const std::string &origin)
{
  auto it = j.find(key);
  if (it == j.end()) fail(origin, std::string("actionmd.json has no key '") + key + "'");
  return *it;
}

// A finite number, > 0 if `positive`, else >= 0 (as the Python reader).
double number(const json &j, const char *key, bool positive, const std::string &origin)
{
  const json &v = require(j, key, origin);
  if (!v.is_number() || v.is_boolean())
    fail(origin, std::string("actionmd.json key '") + key + "' must be a number, got " + v.dump());
  double x = v.get<double>();
  if (!std::isfinite(x) || x < 0.0 || (positive && x == 0.0))
    fail(origin, std::string("actionmd.json key '") + key + "' must be a finite " +
                     (positive ? "positive" : "non-negative") + " number, got " + v.dump());
  return x;
}

bool boolean(const json &j, const char *key, const std::string &origin)
{
  const json &v = require(j, key, origin);
  if (!v.is_boolean())
    fail(origin, std::string("actionmd.json key '") + key + "' must be true or false, got " +
                     v.dump());
  return v.get<bool>();
}

// Optional training_range {"closest_pair": {"Z1-Z2": distance}}, by model type ids (docs/model-format.md).
void parse_training_range(const json &j, ModelMetadata &m, const std::string &origin)
{
  const size_t n = m.species.size();
  m.closest_pair.assign(n, std::vector<double>(n, 0.0));
  auto range = j.find("training_range");
  if (range == j.end()) return;
  const std::string form = "actionmd.json key 'training_range' must be {\"closest_pair\": {\"Z1-Z2\": "
                           "distance in Angstrom > 0, ...}}, got ";
  if (!range->is_object()) fail(origin, form + range->dump());
  auto closest = range->find("closest_pair");
  if (closest == range->end()) return;
  if (!closest->is_object()) fail(origin, form + range->dump());
  for (auto it = closest->begin(); it != closest->end(); ++it) {
    const std::string &key = it.key();
    const auto dash = key.find('-');
    const bool digits = dash != std::string::npos && dash > 0 && dash + 1 < key.size() &&
        key.find_first_not_of("0123456789-") == std::string::npos && key.find('-', dash + 1) == std::string::npos;
    if (!digits || !it->is_number() || it->is_boolean() || !(it->get<double>() > 0.0) ||
        !std::isfinite(it->get<double>()))
      fail(origin, form + range->dump());
    const int z1 = std::stoi(key.substr(0, dash)), z2 = std::stoi(key.substr(dash + 1));
    const auto a = std::find(m.species.begin(), m.species.end(), z1);
    const auto b = std::find(m.species.begin(), m.species.end(), z2);
    if (a == m.species.end() || b == m.species.end())    // as actionmd.model_file: a sign of a wrong --data
      fail(origin, "actionmd.json key 'training_range' names the species pair " + key +
                       " that the model does not have; export the model again with its own training data");
    m.closest_pair[a - m.species.begin()][b - m.species.begin()] = it->get<double>();
    m.closest_pair[b - m.species.begin()][a - m.species.begin()] = it->get<double>();
  }
}

}    // namespace

ModelMetadata parse_metadata(const std::string &text, const std::string &origin)
{
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception &e) {
    fail(origin, std::string("actionmd.json is not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) fail(origin, "actionmd.json must hold a JSON object");

  ModelMetadata m;
  const json &fmt = require(j, "format", origin);
  if (!fmt.is_string() || fmt.get<std::string>() != "actionmd")
    fail(origin, "actionmd.json key 'format' must be \"actionmd\", got " + fmt.dump());

  const json &ver = require(j, "format_version", origin);
  if (!ver.is_number_integer())
    fail(origin, "actionmd.json key 'format_version' must be an integer, got " + ver.dump());
  m.format_version = ver.get<int>();
  if (m.format_version > 1)
    throw ModelError("model file " + origin + ": format_version " +
                     std::to_string(m.format_version) +
                     " is newer than this plugin understands (1). Update the actionmd LAMMPS "
                     "plugin (pip install -U actionmd) or export the model with format_version 1");
  if (m.format_version < 1)
    fail(origin, "actionmd.json format_version must be >= 1, got " + ver.dump());

  const json &species = require(j, "species", origin);
  if (!species.is_array() || species.empty())
    fail(origin, "actionmd.json key 'species' must be a non-empty list of atomic numbers, got " +
                     species.dump());
  for (const auto &z : species) {
    if (!z.is_number_integer() || z.get<int>() < 1 || z.get<int>() > 118)
      fail(origin, "actionmd.json 'species' entries must be atomic numbers 1..118, got " +
                       z.dump());
    m.species.push_back(z.get<int>());
  }
  for (size_t a = 0; a < m.species.size(); ++a)
    for (size_t b = a + 1; b < m.species.size(); ++b)
      if (m.species[a] == m.species[b])
        fail(origin, "actionmd.json 'species' lists atomic number " +
                         std::to_string(m.species[a]) + " twice");

  const json &masses = require(j, "masses", origin);
  if (!masses.is_array() || masses.size() != m.species.size())
    fail(origin, "actionmd.json key 'masses' must be a list with one mass (u) per species (" +
                     std::to_string(m.species.size()) + "), got " + masses.dump());
  for (const auto &x : masses) {
    if (!x.is_number() || x.is_boolean() || !(x.get<double>() > 0.0))
      fail(origin, "actionmd.json 'masses' entries must be positive numbers (u), got " + x.dump());
    m.masses.push_back(x.get<double>());
  }

  m.stride = number(j, "stride", true, origin);
  m.cutoff = number(j, "cutoff", false, origin);
  m.interaction_range = number(j, "interaction_range", false, origin);

  const json &dtype = require(j, "dtype", origin);
  if (!dtype.is_string() || (dtype != "float32" && dtype != "float64"))
    fail(origin, "actionmd.json key 'dtype' must be \"float32\" or \"float64\", got " +
                     dtype.dump());
  m.dtype = dtype.get<std::string>();

  m.has_predictor = boolean(j, "has_predictor", origin);
  m.time_reversible = boolean(j, "time_reversible", origin);

  auto d = j.find("description");
  if (d != j.end() && d->is_string()) m.description = d->get<std::string>();
  auto a = j.find("architecture");
  m.learned = a != j.end() && a->is_object() && a->value("name", "") == "actionmd.models.ActionNet";
  // optional; as actionmd.model_file.Metadata.translation_invariant, true by default for learned files
  m.translation_invariant = j.contains("translation_invariant") ? boolean(j, "translation_invariant", origin)
                                                                 : m.learned;
  parse_training_range(j, m, origin);
  return m;
}

}    // namespace actionmd
