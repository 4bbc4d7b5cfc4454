#include "TimewarpIntegratorProxy.h"
#include "TimewarpIntegrator.h"
#include "internal/TimewarpModelFile.h"
#include "openmm/OpenMMException.h"
#include "openmm/serialization/SerializationNode.h"
#include <memory>
#include <typeinfo>

using namespace OpenMM;
using namespace TimewarpPlugin;
using namespace std;

namespace {

constexpr int SERIALIZATION_VERSION = 2;
constexpr char BASE64_ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

string base64Encode(const string& bytes) {
    string text;
    text.reserve(4 * ((bytes.size() + 2) / 3));
    for (size_t i = 0; i < bytes.size(); i += 3) {
        size_t count = min<size_t>(3, bytes.size() - i);
        unsigned int group = 0;
        for (size_t k = 0; k < 3; k++)
            group = (group << 8) | (k < count ? (unsigned char) bytes[i + k] : 0);
        for (size_t k = 0; k < 4; k++)
            text += k <= count ? BASE64_ALPHABET[(group >> (18 - 6 * k)) & 63] : '=';
    }
    return text;
}

string base64Decode(const string& text) {
    int values[256];
    fill(values, values + 256, -1);
    for (int i = 0; i < 64; i++)
        values[(unsigned char) BASE64_ALPHABET[i]] = i;
    if (text.size() % 4 != 0)
        throw OpenMMException("TimewarpIntegrator: the embedded model is not valid base64");
    string bytes;
    bytes.reserve(3 * (text.size() / 4));
    for (size_t i = 0; i < text.size(); i += 4) {
        unsigned int group = 0;
        int padding = 0;
        for (size_t k = 0; k < 4; k++) {
            char c = text[i + k];
            bool lastGroup = i + 4 == text.size();
            if (c == '=' && lastGroup && k >= 2) {
                padding++;
                group <<= 6;
                continue;
            }
            int value = values[(unsigned char) c];
            if (value < 0 || padding > 0)
                throw OpenMMException("TimewarpIntegrator: the embedded model is not valid base64");
            group = (group << 6) | value;
        }
        for (int k = 0; k < 3 - padding; k++)
            bytes += (char) ((group >> (16 - 8 * k)) & 255);
    }
    return bytes;
}

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

/** The embedded model, refused unless its bytes have the SHA-1 recorded beside them. */
shared_ptr<const TimewarpModel> readEmbeddedModel(const SerializationNode& node) {
    const string& path = node.getStringProperty("modelPath");
    string bytes = base64Decode(node.getStringProperty("model"));
    const string& recorded = node.getStringProperty("modelSha1");
    string actual = sha1Hex(bytes);
    if (actual != recorded)
        throw OpenMMException("TimewarpIntegrator: the model embedded in the XML has SHA-1 " +
                              actual + " but the XML records " + recorded + " (serialized from " +
                              path + "): the XML was altered or damaged; refusing to run it");
    return loadModelBytes(bytes, path + " (embedded in the XML)");
}

} // namespace

TimewarpIntegratorProxy::TimewarpIntegratorProxy(const string& typeName)
    : SerializationProxy(typeName) {
}

void TimewarpIntegratorProxy::serialize(const void* object, SerializationNode& node) const {
    node.setIntProperty("version", SERIALIZATION_VERSION);
    const TimewarpIntegrator& integrator = *reinterpret_cast<const TimewarpIntegrator*>(object);
    node.setStringProperty("modelPath", integrator.getModelPath());
    node.setStringProperty("modelSha1", integrator.getModelChecksum());
    node.setStringProperty("model", base64Encode(integrator.getModel().bytes));
    node.setDoubleProperty("temperature", integrator.getTemperature());
    node.setIntProperty("maxProposalBatch", integrator.getMaxProposalBatch());
    node.setBoolProperty("explorationMode", integrator.getExplorationMode());
    node.setDoubleProperty("explorationThreshold", integrator.getExplorationThreshold());
    node.setIntProperty("randomSeed", integrator.getRandomNumberSeed());
    node.setIntProperty("integrationForceGroups", integrator.getIntegrationForceGroups());
    node.setIntProperty("modelThreads", integrator.getModelThreads());
    node.setStringProperty("modelDevice", integrator.getModelDevice());
    writeIndices(node, "AtomTypes", integrator.getAtomTypes());
    writeIndices(node, "ChiralCentres", integrator.getChiralCentres());
}

void* TimewarpIntegratorProxy::deserialize(const SerializationNode& node) const {
    int version = node.getIntProperty("version");
    if (version != 1 && version != SERIALIZATION_VERSION)
        throw OpenMMException("TimewarpIntegrator: unsupported XML version " + to_string(version) +
                              " (this plugin reads versions 1 and 2)");
    // Version 1 stored only the model's path, which must still hold the same model.
    unique_ptr<TimewarpIntegrator> integrator(
        version == 1 ? new TimewarpIntegrator(node.getStringProperty("modelPath"),
                                              node.getDoubleProperty("temperature"),
                                              readIndices(node, "AtomTypes"),
                                              readIndices(node, "ChiralCentres"))
                     : new TimewarpIntegrator(readEmbeddedModel(node),
                                              node.getStringProperty("modelPath"),
                                              node.getDoubleProperty("temperature"),
                                              readIndices(node, "AtomTypes"),
                                              readIndices(node, "ChiralCentres")));
    integrator->setMaxProposalBatch(node.getIntProperty("maxProposalBatch"));
    integrator->setExplorationMode(node.getBoolProperty("explorationMode"),
                                   node.getDoubleProperty("explorationThreshold"));
    integrator->setRandomNumberSeed(node.getIntProperty("randomSeed"));
    integrator->setIntegrationForceGroups(node.getIntProperty("integrationForceGroups"));
    if (version >= 2) {
        integrator->setModelThreads(node.getIntProperty("modelThreads"));
        integrator->setModelDevice(node.getStringProperty("modelDevice"));
    }
    return integrator.release();
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
    // The last proxy registered for a type writes it; both names are read.
    SerializationProxy::registerProxy(
        typeid(TimewarpIntegrator),
        new TimewarpIntegratorProxy(TimewarpIntegratorProxy::LEGACY_TYPE_NAME));
    SerializationProxy::registerProxy(typeid(TimewarpIntegrator), new TimewarpIntegratorProxy());
}
