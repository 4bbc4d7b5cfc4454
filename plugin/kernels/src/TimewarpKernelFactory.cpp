#include "TimewarpKernelFactory.h"
#include "TorchTimewarpKernels.h"
#include "internal/windowsExportTimewarp.h"
#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"

using namespace OpenMM;
using namespace TimewarpPlugin;

extern "C" OPENMM_EXPORT_TIMEWARP void registerPlatforms() {
}

/** Called by Platform::loadPluginLibrary: one implementation serves every platform present. */
extern "C" OPENMM_EXPORT_TIMEWARP void registerKernelFactories() {
    for (int i = 0; i < Platform::getNumPlatforms(); i++) {
        Platform& platform = Platform::getPlatform(i);
        if (!platform.supportsKernels({IntegrateTimewarpStepKernel::Name()}))
            platform.registerKernelFactory(IntegrateTimewarpStepKernel::Name(),
                                           new TimewarpKernelFactory());
    }
}

KernelImpl* TimewarpKernelFactory::createKernelImpl(std::string name, const Platform& platform,
                                                    ContextImpl& context) const {
    if (name == IntegrateTimewarpStepKernel::Name())
        return new TorchIntegrateTimewarpStepKernel(name, platform);
    throw OpenMMException("TimewarpKernelFactory: no kernel named '" + name + "'");
}
