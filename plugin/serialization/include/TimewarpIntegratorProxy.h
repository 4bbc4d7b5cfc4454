#ifndef OPENMM_TIMEWARP_INTEGRATOR_PROXY_H_
#define OPENMM_TIMEWARP_INTEGRATOR_PROXY_H_

#include "internal/windowsExportTimewarp.h"
#include "openmm/serialization/SerializationProxy.h"
#include <string>

namespace TimewarpPlugin {

/**
 * XML serialization of a TimewarpIntegrator: its parameters and the proposal-model file itself
 * (base64 of its bytes, with their SHA-1, verified on reading), so the XML deserializes on
 * another machine or path.  Version 1 files, which stored the model's path only, are still read.
 */
class OPENMM_EXPORT_TIMEWARP TimewarpIntegratorProxy : public OpenMM::SerializationProxy {
public:
    // Plain literals: the proxies are registered before dynamic initialisation runs.
    /**
     * The type name written to XML.  It says what registers the proxy, so that OpenMM's error
     * for an XML read before the plugin is loaded tells the user what to import.
     */
    static constexpr const char* TYPE_NAME = "TimewarpIntegrator (import openmm_timewarp)";
    /** The type name of version 1 files, read only. */
    static constexpr const char* LEGACY_TYPE_NAME = "TimewarpIntegrator";
    explicit TimewarpIntegratorProxy(const std::string& typeName = TYPE_NAME);
    void serialize(const void* object, OpenMM::SerializationNode& node) const override;
    void* deserialize(const OpenMM::SerializationNode& node) const override;
};

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_INTEGRATOR_PROXY_H_*/
