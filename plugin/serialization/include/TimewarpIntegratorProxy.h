#ifndef OPENMM_TIMEWARP_INTEGRATOR_PROXY_H_
#define OPENMM_TIMEWARP_INTEGRATOR_PROXY_H_

#include "internal/windowsExportTimewarp.h"
#include "openmm/serialization/SerializationProxy.h"

namespace TimewarpPlugin {

/** XML serialization of a TimewarpIntegrator's parameters (the model is stored by path). */
class OPENMM_EXPORT_TIMEWARP TimewarpIntegratorProxy : public OpenMM::SerializationProxy {
public:
    TimewarpIntegratorProxy();
    void serialize(const void* object, OpenMM::SerializationNode& node) const override;
    void* deserialize(const OpenMM::SerializationNode& node) const override;
};

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_INTEGRATOR_PROXY_H_*/
