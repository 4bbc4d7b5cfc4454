#ifndef OPENMM_TIMEWARP_KERNELS_H_
#define OPENMM_TIMEWARP_KERNELS_H_

#include "TimewarpIntegrator.h"
#include "openmm/KernelImpl.h"
#include "openmm/System.h"
#include "openmm/internal/ContextImpl.h"
#include <string>

namespace TimewarpPlugin {

/** Runs iterations of a TimewarpIntegrator's Metropolis-Hastings chain. */
class IntegrateTimewarpStepKernel : public OpenMM::KernelImpl {
public:
    static std::string Name() {
        return "IntegrateTimewarpStep";
    }
    IntegrateTimewarpStepKernel(std::string name, const OpenMM::Platform& platform)
        : OpenMM::KernelImpl(name, platform) {
    }
    /** Load the proposal model for the Context's device. */
    virtual void initialize(OpenMM::ContextImpl& context, const TimewarpIntegrator& integrator) = 0;
    /** Run `steps` iterations, updating the Context and `chain`. */
    virtual void execute(OpenMM::ContextImpl& context, const TimewarpIntegrator& integrator,
                         TimewarpChainState& chain, int steps) = 0;
    virtual double computeKineticEnergy(OpenMM::ContextImpl& context,
                                        const TimewarpIntegrator& integrator) = 0;
};

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_KERNELS_H_*/
