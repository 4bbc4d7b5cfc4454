#include "TimewarpIntegratorProxy.h"
#include "TimewarpIntegrator.h"
#include "openmm/OpenMMException.h"
#include "openmm/serialization/SerializationNode.h"
#include <typeinfo>

using namespace OpenMM;
using namespace TimewarpPlugin;
using namespace std;

namespace {

const int SERIALIZATION_VERSION = 1;

void writeIndices(SerializationNode& node, const string& name, const vector<int>& values) {
    SerializationNode& child = node.createChildNode(name);
    for (int value : values)
        child.createChildNode("Index").setIntProperty("v", value);
}

vector<int> readIndices(const SerializationNode& node, const string& name) {
    vector<int> values;
    for (const SerializationNode& child : node.getChildNode(name).getChildren())
        values.push_back(child.getIntProperty("v"));
    return values;
}

} // namespace

TimewarpIntegratorProxy::TimewarpIntegratorProxy() : SerializationProxy("TimewarpIntegrator") {
}

void TimewarpIntegratorProxy::serialize(const void* object, SerializationNode& node) const {
    node.setIntProperty("version", SERIALIZATION_VERSION);
    const TimewarpIntegrator& integrator = *reinterpret_cast<const TimewarpIntegrator*>(object);
    node.setStringProperty("modelPath", integrator.getModelPath());
    node.setDoubleProperty("temperature", integrator.getTemperature());
    node.setIntProperty("maxProposalBatch", integrator.getMaxProposalBatch());
    node.setBoolProperty("explorationMode", integrator.getExplorationMode());
    node.setDoubleProperty("explorationThreshold", integrator.getExplorationThreshold());
    node.setIntProperty("randomSeed", integrator.getRandomNumberSeed());
    node.setIntProperty("integrationForceGroups", integrator.getIntegrationForceGroups());
    writeIndices(node, "AtomTypes", integrator.getAtomTypes());
    writeIndices(node, "ChiralCentres", integrator.getChiralCentres());
}

void* TimewarpIntegratorProxy::deserialize(const SerializationNode& node) const {
    if (node.getIntProperty("version") != SERIALIZATION_VERSION)
        throw OpenMMException("Unsupported version number for TimewarpIntegrator");
    TimewarpIntegrator* integrator = new TimewarpIntegrator(
        node.getStringProperty("modelPath"), node.getDoubleProperty("temperature"),
        readIndices(node, "AtomTypes"), readIndices(node, "ChiralCentres"));
    try {
        integrator->setMaxProposalBatch(node.getIntProperty("maxProposalBatch"));
        integrator->setExplorationMode(node.getBoolProperty("explorationMode"),
                                       node.getDoubleProperty("explorationThreshold"));
        integrator->setRandomNumberSeed(node.getIntProperty("randomSeed"));
        integrator->setIntegrationForceGroups(node.getIntProperty("integrationForceGroups"));
    }
    catch (...) {
        delete integrator;
        throw;
    }
    return integrator;
}

#if defined(WIN32)
#include <windows.h>
extern "C" void registerTimewarpSerializationProxies();
BOOL WINAPI DllMain(HANDLE hModule, DWORD ul_reason_for_call, LPVOID lpReserved) {
    if (ul_reason_for_call == DLL_PROCESS_ATTACH)
        registerTimewarpSerializationProxies();
    return TRUE;
}
#else
extern "C" void __attribute__((constructor)) registerTimewarpSerializationProxies();
#endif

extern "C" void registerTimewarpSerializationProxies() {
    SerializationProxy::registerProxy(typeid(TimewarpIntegrator), new TimewarpIntegratorProxy());
}
