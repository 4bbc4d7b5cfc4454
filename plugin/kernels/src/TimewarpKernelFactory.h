#ifndef OPENMM_TIMEWARP_KERNEL_FACTORY_H_
#define OPENMM_TIMEWARP_KERNEL_FACTORY_H_

#include "openmm/KernelFactory.h"

namespace TimewarpPlugin {

/** Creates the ContextImpl-based Timewarp kernel for any platform. */
class TimewarpKernelFactory : public OpenMM::KernelFactory {
public:
    OpenMM::KernelImpl* createKernelImpl(std::string name, const OpenMM::Platform& platform,
                                         OpenMM::ContextImpl& context) const override;
};

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_KERNEL_FACTORY_H_*/
