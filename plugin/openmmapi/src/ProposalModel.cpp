#include "internal/ProposalModel.h"
#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <unistd.h>

using namespace std;

namespace TimewarpPlugin {

namespace {

class TorchScriptProposalModel : public ProposalModel {
public:
    TorchScriptProposalModel(torch::jit::Module module, const torch::Device& device)
        : module(std::move(module)), target(device) {
    }
    shared_ptr<ProposalModel> onDevice(const torch::Device& device) const override {
        torch::jit::Module moved = module;  // shares the weights, as the integrator's copy does
        moved.to(device);
        return make_shared<TorchScriptProposalModel>(moved, device);
    }
    torch::Device device() const override {
        return target;
    }
    vector<torch::Tensor> forward(const torch::Tensor& positions, const torch::Tensor& atomTypes,
                                  const torch::Tensor& noise) override {
        // The profiling executor re-specialises the graph for every new batch size (measured
        // 3-5x slower on CUDA with adaptive batches); the Python sampler turns it off as well.
        torch::jit::GraphOptimizerEnabledGuard noProfiling(false);
        torch::jit::IValue output = module.forward({positions, atomTypes, noise});
        if (!output.isTuple())
            throw ModelOutputError("forward must return a tuple (proposals, logQRatio)");
        vector<torch::Tensor> tensors;
        for (const torch::jit::IValue& element : output.toTupleRef().elements()) {
            if (!element.isTensor())
                throw ModelOutputError("forward must return two tensors");
            tensors.push_back(element.toTensor());
        }
        return tensors;
    }

private:
    torch::jit::Module module;
    torch::Device target;
};

/** A file that exists for the lifetime of this object: the loader reads packages by path. */
class TemporaryPackageFile {
public:
    explicit TemporaryPackageFile(const string& bytes) {
        const char* folder = getenv("TMPDIR");
        path = string(folder && *folder ? folder : "/tmp") + "/timewarp-model-XXXXXX.pt2";
        int descriptor = mkstemps(&path[0], 4);
        if (descriptor < 0)
            throw runtime_error("cannot create a temporary file " + path);
        close(descriptor);
        ofstream file(path, ios::binary);
        file.write(bytes.data(), bytes.size());
        if (!file.good()) {
            remove(path.c_str());
            throw runtime_error("cannot write the temporary file " + path);
        }
    }
    ~TemporaryPackageFile() {
        remove(path.c_str());
    }
    string path;
};

class AotiProposalModel : public ProposalModel {
public:
    AotiProposalModel(string bytes, string deviceKey, const torch::Device& device)
        : bytes(std::move(bytes)), deviceKey(std::move(deviceKey)), target(device) {
        // A CUDA package is loaded once its Context has chosen the GPU (onDevice).
        if (device.is_cuda() && !device.has_index())
            return;
        // The loader unpacks the package into its own folder, so the file can go at once.
        TemporaryPackageFile file(this->bytes);
        loader = make_shared<torch::inductor::AOTIModelPackageLoader>(
            file.path, "model", false, 1, device.is_cuda() ? device.index() : -1);
    }
    shared_ptr<ProposalModel> onDevice(const torch::Device& device) const override {
        // A package runs on the kind of device it was compiled for: a CPU package stays on the
        // CPU, a CUDA package needs a CUDA device (its index is chosen when it is loaded).
        if (deviceKey == "cpu" || device == target)
            return make_shared<AotiProposalModel>(*this);
        if (!device.is_cuda())
            throw runtime_error("the package was compiled for " + deviceKey +
                                "; it cannot run on " + device.str() +
                                " (export it for the CPU, or run on the CUDA platform)");
        return make_shared<AotiProposalModel>(bytes, deviceKey, device);
    }
    torch::Device device() const override {
        return target;
    }
    vector<torch::Tensor> forward(const torch::Tensor& positions, const torch::Tensor& atomTypes,
                                  const torch::Tensor& noise) override {
        if (!loader)
            throw runtime_error("the CUDA package has not been loaded on a GPU");
        return loader->run({positions, atomTypes, noise});
    }

private:
    string bytes;
    string deviceKey;
    torch::Device target;
    shared_ptr<torch::inductor::AOTIModelPackageLoader> loader;
};

} // namespace

shared_ptr<ProposalModel> torchScriptProposalModel(torch::jit::Module module) {
    return make_shared<TorchScriptProposalModel>(std::move(module), torch::kCPU);
}

bool isAotiPackage(const string& bytes) {
    try {
        caffe2::serialize::PyTorchStreamReader reader(
            make_shared<caffe2::serialize::MemoryReadAdapter>(bytes.data(), bytes.size()));
        for (const string& record : reader.getAllRecords())
            if (record.rfind("data/aotinductor/", 0) == 0)
                return true;
    }
    catch (const exception&) {
        // Not a readable archive: the TorchScript loader says what is wrong with it.
    }
    return false;
}

shared_ptr<ProposalModel> aotiProposalModel(const string& bytes,
                                            unordered_map<string, string>& metadata) {
    {
        TemporaryPackageFile file(bytes);
        metadata = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(file.path,
                                                                                       "model");
    }
    string deviceKey = metadata.count("AOTI_DEVICE_KEY") ? metadata["AOTI_DEVICE_KEY"] : "cpu";
    torch::Device device = deviceKey == "cpu" ? torch::Device(torch::kCPU)
                                              : torch::Device(torch::kCUDA);
    return make_shared<AotiProposalModel>(bytes, deviceKey, device);
}

} // namespace TimewarpPlugin
