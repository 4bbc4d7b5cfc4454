#include "internal/TimewarpModelFile.h"
#include "openmm/OpenMMException.h"
#include <fstream>
#include <torch/script.h>

using namespace OpenMM;
using namespace std;

namespace TimewarpPlugin {

namespace {

const string CONTRACT_HINT = " (see docs/contract.md; write models with openmm_timewarp.export)";

int readIntAttribute(const torch::jit::Module& module, const string& path, const string& name) {
    if (!module.hasattr(name) || !module.attr(name).isInt())
        throw OpenMMException("TimewarpIntegrator: the proposal model " + path +
                              " lacks the int attribute '" + name + "'" + CONTRACT_HINT);
    return (int) module.attr(name).toInt();
}

} // namespace

ModelAttributes readModelAttributes(const string& path) {
    if (!ifstream(path).good())
        throw OpenMMException("TimewarpIntegrator: cannot read the proposal model file '" + path +
                              "': give the path of an existing TorchScript file or a bundled "
                              "model name");
    torch::jit::Module module;
    torch::jit::ExtraFilesMap extraFiles{{"timewarp.sha256", ""}};
    try {
        module = torch::jit::load(path, torch::kCPU, extraFiles);
    }
    catch (const exception& error) {
        throw OpenMMException("TimewarpIntegrator: '" + path + "' is not a TorchScript archive " +
                              "that torch::jit::load can read" + CONTRACT_HINT);
    }
    ModelAttributes attributes;
    attributes.checksum = extraFiles["timewarp.sha256"];
    attributes.noiseDim = readIntAttribute(module, path, "noise_dim");
    attributes.numAtoms = readIntAttribute(module, path, "num_atoms");
    attributes.numAtomTypes = readIntAttribute(module, path, "num_atom_types");
    if (!module.hasattr("tau") || !module.attr("tau").isDouble())
        throw OpenMMException("TimewarpIntegrator: the proposal model " + path +
                              " lacks the float attribute 'tau'" + CONTRACT_HINT);
    attributes.tau = module.attr("tau").toDouble();
    // Optional: files written before the attribute existed are conditional proposals.
    attributes.independent = false;
    if (module.hasattr("independent")) {
        if (!module.attr("independent").isBool())
            throw OpenMMException("TimewarpIntegrator: the proposal model " + path +
                                  " has an attribute 'independent' that is not a bool" +
                                  CONTRACT_HINT);
        attributes.independent = module.attr("independent").toBool();
    }
    if (attributes.noiseDim < 1 || attributes.numAtoms < 0 || attributes.numAtomTypes < 1 ||
        !(attributes.tau > 0.0))
        throw OpenMMException("TimewarpIntegrator: the proposal model " + path + " has invalid " +
                              "attributes (noise_dim >= 1, num_atoms >= 0, num_atom_types >= 1 " +
                              "and tau > 0 are required)" + CONTRACT_HINT);
    if (!module.find_method("forward"))
        throw OpenMMException("TimewarpIntegrator: the proposal model " + path +
                              " has no forward method" + CONTRACT_HINT);
    return attributes;
}

} // namespace TimewarpPlugin
