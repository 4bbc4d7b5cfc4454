#ifndef OPENMM_TIMEWARP_PROPOSAL_MODEL_H_
#define OPENMM_TIMEWARP_PROPOSAL_MODEL_H_

#include <memory>
#include <stdexcept>
#include <string>
#include <torch/script.h>
#include <unordered_map>
#include <vector>

namespace TimewarpPlugin {

/** A model's output that is not a tuple of tensors: a broken model, not a failed call. */
struct ModelOutputError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/**
 * The one call the integrator makes, `forward(positions, atom_types, noise)`, whatever format the
 * model file has: a TorchScript module or an AOTInductor package (docs/contract.md).
 */
class ProposalModel {
public:
    virtual ~ProposalModel() = default;
    /** The model to run on `device`: a TorchScript module moved there, or for a package the
     * package itself when it was compiled for that device or for the CPU (then its calls run on
     * the CPU, wherever the Context is). */
    virtual std::shared_ptr<ProposalModel> onDevice(const torch::Device& device) const = 0;
    /** The device the model's inputs must be on. */
    virtual torch::Device device() const = 0;
    /** The outputs of forward; throws ModelOutputError for an output that is not tensors. */
    virtual std::vector<torch::Tensor> forward(const torch::Tensor& positions,
                                               const torch::Tensor& atomTypes,
                                               const torch::Tensor& noise) = 0;
};

/** A TorchScript module, run without the profiling executor. */
std::shared_ptr<ProposalModel> torchScriptProposalModel(torch::jit::Module module);

/** Whether `bytes` are a zip archive with the AOTInductor package layout (data/aotinductor/). */
bool isAotiPackage(const std::string& bytes);

/**
 * An AOTInductor package loaded from its bytes (libtorch's AOTIModelPackageLoader, which runs
 * the package's compiled code: load only packages you trust, see docs/trust.md), and the
 * metadata stored in it.
 */
std::shared_ptr<ProposalModel>
aotiProposalModel(const std::string& bytes,
                  std::unordered_map<std::string, std::string>& metadata);

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_PROPOSAL_MODEL_H_*/
