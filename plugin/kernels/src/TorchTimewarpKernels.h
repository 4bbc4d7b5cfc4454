#ifndef OPENMM_TORCH_TIMEWARP_KERNELS_H_
#define OPENMM_TORCH_TIMEWARP_KERNELS_H_

#include "TimewarpKernels.h"
#include "internal/ProposalModel.h"
#include <vector>

namespace TimewarpPlugin {

/**
 * The Metropolis-Hastings chain through ContextImpl alone (positions, velocities, energy-only
 * evaluations) and libtorch (the proposal model), so one implementation serves every platform:
 * it is not an OpenMM platform backend, hence "Torch" rather than "Reference" or "Common".  The proposal model runs on the
 * Context's GPU when the platform is CUDA, torch has CUDA and the integrator's model device is
 * "auto"; else on the CPU.
 */
class TorchIntegrateTimewarpStepKernel : public IntegrateTimewarpStepKernel {
public:
    TorchIntegrateTimewarpStepKernel(std::string name, const OpenMM::Platform& platform)
        : IntegrateTimewarpStepKernel(name, platform) {
    }
    void initialize(OpenMM::ContextImpl& context, const TimewarpIntegrator& integrator) override;
    void execute(OpenMM::ContextImpl& context, const TimewarpIntegrator& integrator,
                 TimewarpChainState& chain, int steps) override;
    double computeKineticEnergy(OpenMM::ContextImpl& context,
                                const TimewarpIntegrator& integrator) override;

private:
    void drawProposals(const TimewarpIntegrator& integrator, TimewarpChainState& chain,
                       const std::vector<OpenMM::Vec3>& positions);
    bool invertsChirality(const TimewarpIntegrator& integrator,
                          const std::vector<OpenMM::Vec3>& current, const double* proposal) const;
    std::shared_ptr<ProposalModel> model;
    torch::Tensor atomTypes;
    std::vector<double> inverseSqrtMasses;  // 1 / sqrt(m) per particle, 0 for massless ones
};

} // namespace TimewarpPlugin

#endif /*OPENMM_TORCH_TIMEWARP_KERNELS_H_*/
