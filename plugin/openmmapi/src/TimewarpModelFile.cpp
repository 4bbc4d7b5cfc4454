#include "internal/TimewarpModelFile.h"
#include "internal/ProposalModel.h"
#include "openmm/OpenMMException.h"
#include <c10/util/hash.h>
#include <fstream>
#include <sstream>

using namespace OpenMM;
using namespace std;

namespace TimewarpPlugin {

namespace {

const string CONTRACT_HINT = " (see docs/contract.md; write models with openmm_timewarp.export)";
const string METADATA_FILE = "timewarp.json";
const string CHECKSUM_FILE = "timewarp.sha256";

int readIntAttribute(const torch::jit::Module& module, const string& source, const string& name) {
    if (!module.hasattr(name) || !module.attr(name).isInt())
        throw OpenMMException("TimewarpIntegrator: the proposal model " + source +
                              " lacks the int attribute '" + name + "'" + CONTRACT_HINT);
    return (int) module.attr(name).toInt();
}

void checkAttributes(const ModelAttributes& attributes, const string& source) {
    if (attributes.noiseDim < 1 || attributes.numAtoms < 0 || attributes.numAtomTypes < 1 ||
        !(attributes.tau > 0.0))
        throw OpenMMException("TimewarpIntegrator: the proposal model " + source + " has invalid " +
                              "attributes (noise_dim >= 1, num_atoms >= 0, num_atom_types >= 1 " +
                              "and tau > 0 are required)" + CONTRACT_HINT);
}

ModelAttributes readAttributes(const torch::jit::Module& module, const string& source) {
    ModelAttributes attributes;
    attributes.noiseDim = readIntAttribute(module, source, "noise_dim");
    attributes.numAtoms = readIntAttribute(module, source, "num_atoms");
    attributes.numAtomTypes = readIntAttribute(module, source, "num_atom_types");
    if (!module.hasattr("tau") || !module.attr("tau").isDouble())
        throw OpenMMException("TimewarpIntegrator: the proposal model " + source +
                              " lacks the float attribute 'tau'" + CONTRACT_HINT);
    attributes.tau = module.attr("tau").toDouble();
    // Optional: files written before the attribute existed are conditional proposals.
    attributes.independent = false;
    if (module.hasattr("independent")) {
        if (!module.attr("independent").isBool())
            throw OpenMMException("TimewarpIntegrator: the proposal model " + source +
                                  " has an attribute 'independent' that is not a bool" +
                                  CONTRACT_HINT);
        attributes.independent = module.attr("independent").toBool();
    }
    checkAttributes(attributes, source);
    if (!module.find_method("forward"))
        throw OpenMMException("TimewarpIntegrator: the proposal model " + source +
                              " has no forward method" + CONTRACT_HINT);
    return attributes;
}

/** A package's metadata value as a number: the whole string must be one. */
double readNumber(const unordered_map<string, string>& metadata, const string& source,
                  const string& name, bool integer) {
    auto entry = metadata.find(name);
    size_t used = 0;
    double value = 0.0;
    try {
        if (entry != metadata.end())
            value = integer ? (double) stoll(entry->second, &used) : stod(entry->second, &used);
    }
    catch (const exception&) {
        used = 0;
    }
    if (entry == metadata.end() || used == 0 || used != entry->second.size())
        throw OpenMMException("TimewarpIntegrator: the proposal-model package " + source +
                              " lacks the " + (integer ? "integer" : "number") + " '" + name +
                              "' in its metadata" + CONTRACT_HINT);
    return value;
}

ModelAttributes readPackageAttributes(const unordered_map<string, string>& metadata,
                                      const string& source) {
    ModelAttributes attributes;
    attributes.noiseDim = (int) readNumber(metadata, source, "noise_dim", true);
    attributes.numAtoms = (int) readNumber(metadata, source, "num_atoms", true);
    attributes.numAtomTypes = (int) readNumber(metadata, source, "num_atom_types", true);
    attributes.tau = readNumber(metadata, source, "tau", false);
    auto independent = metadata.find("independent");
    attributes.independent = independent != metadata.end() && independent->second == "true";
    checkAttributes(attributes, source);
    return attributes;
}

shared_ptr<TimewarpModel> loadPackage(const string& bytes, const string& source) {
    auto model = make_shared<TimewarpModel>();
    unordered_map<string, string> metadata;
    try {
        model->proposal = aotiProposalModel(bytes, metadata);
    }
    catch (const exception& error) {
        throw OpenMMException("TimewarpIntegrator: cannot load the AOTInductor package '" + source +
                              "': " + error.what());
    }
    model->attributes = readPackageAttributes(metadata, source);
    model->attributes.checksum = metadata.count(CHECKSUM_FILE) ? metadata[CHECKSUM_FILE] : "";
    model->metadataJson = metadata.count(METADATA_FILE) ? metadata[METADATA_FILE] : "";
    return model;
}

} // namespace

string sha1Hex(const string& bytes) {
    // c10::sha1 leaves its state unset for an empty string, whose digest is this constant.
    return bytes.empty() ? "da39a3ee5e6b4b0d3255bfef95601890afd80709" : c10::sha1(bytes).str();
}

shared_ptr<const TimewarpModel> loadModelBytes(const string& bytes, const string& source) {
    shared_ptr<TimewarpModel> model;
    if (isAotiPackage(bytes))
        model = loadPackage(bytes, source);
    else {
        model = make_shared<TimewarpModel>();
        torch::jit::ExtraFilesMap extraFiles{{METADATA_FILE, ""}, {CHECKSUM_FILE, ""}};
        torch::jit::Module module;
        try {
            istringstream stream(bytes);
            module = torch::jit::load(stream, torch::kCPU, extraFiles);
        }
        catch (const exception& error) {
            throw OpenMMException("TimewarpIntegrator: '" + source + "' is not a TorchScript archive " +
                                  "that torch::jit::load can read, nor an AOTInductor package" +
                                  CONTRACT_HINT);
        }
        module.eval();
        model->attributes = readAttributes(module, source);
        model->attributes.checksum = extraFiles[CHECKSUM_FILE];
        model->metadataJson = extraFiles[METADATA_FILE];
        model->proposal = torchScriptProposalModel(module);
    }
    model->source = source;
    model->bytes = bytes;
    model->sha1 = sha1Hex(bytes);
    return model;
}

shared_ptr<const TimewarpModel> loadModelFile(const string& path) {
    ifstream file(path, ios::binary);
    if (!file.good())
        throw OpenMMException("TimewarpIntegrator: cannot read the proposal model file '" + path +
                              "': give the path of an existing model file (TorchScript or "
                              "AOTInductor package) or a bundled model name");
    stringstream bytes;
    bytes << file.rdbuf();
    return loadModelBytes(bytes.str(), path);
}

} // namespace TimewarpPlugin
