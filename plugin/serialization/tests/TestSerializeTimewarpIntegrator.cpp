/**
 * XML serialization of a TimewarpIntegrator: every setting survives the round trip, the model
 * travels inside the XML (the file may be gone), the copy runs the same chain bit for bit, and an
 * XML whose embedded model was altered is refused.
 */

#include "TimewarpIntegrator.h"
#include "TimewarpTestModels.h"
#include "openmm/Context.h"
#include "openmm/CustomExternalForce.h"
#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include "openmm/State.h"
#include "openmm/System.h"
#include "openmm/internal/AssertionUtilities.h"
#include "openmm/serialization/XmlSerializer.h"
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <vector>

using namespace OpenMM;
using namespace TimewarpPlugin;
using namespace std;

extern "C" void registerKernelFactories();

namespace {

System tetheredParticles(int count) {
    System system;
    CustomExternalForce* force = new CustomExternalForce("10*(x^2+y^2+z^2)");
    for (int i = 0; i < count; i++)
        force->addParticle(system.addParticle(12.0));
    system.addForce(force);
    return system;
}

string serialize(const TimewarpIntegrator& integrator) {
    stringstream xml;
    XmlSerializer::serialize<Integrator>(&integrator, "Integrator", xml);
    return xml.str();
}

unique_ptr<TimewarpIntegrator> deserialize(const string& xml) {
    stringstream stream(xml);
    unique_ptr<Integrator> copy(XmlSerializer::deserialize<Integrator>(stream));
    ASSERT(dynamic_cast<TimewarpIntegrator*>(copy.get()) != nullptr);
    return unique_ptr<TimewarpIntegrator>(static_cast<TimewarpIntegrator*>(copy.release()));
}

vector<Vec3> positionsAfter(TimewarpIntegrator& integrator, int steps) {
    System system = tetheredParticles(4);
    Context context(system, integrator, Platform::getPlatformByName("Reference"));
    context.setPositions({Vec3(0, 0, 0), Vec3(0.1, 0, 0), Vec3(0, 0.1, 0), Vec3(0, 0, 0.1)});
    integrator.step(steps);
    return context.getState(State::Positions).getPositions();
}

void testRoundTrip() {
    GaussianTestProposal proposal;
    proposal.numAtoms = 4;
    proposal.scale = 0.05;
    proposal.rho = 0.8;
    string path = temporaryPath("serialized.pt");
    writeProposalModel(proposal, path);
    TimewarpIntegrator integrator(path, 310.0, {0, 0, 0, 0}, {0, 1, 2, 3});
    integrator.setMaxProposalBatch(7);
    integrator.setExplorationMode(true, 123.0);
    integrator.setRandomNumberSeed(17);
    integrator.setIntegrationForceGroups(1 << 0);
    integrator.setModelThreads(2);
    integrator.setModelDevice("cpu");
    string xml = serialize(integrator);
    remove(path.c_str());  // the XML carries the model itself

    unique_ptr<TimewarpIntegrator> copy = deserialize(xml);
    ASSERT_EQUAL(integrator.getModelPath(), copy->getModelPath());
    ASSERT_EQUAL(integrator.getModelChecksum(), copy->getModelChecksum());
    ASSERT_EQUAL(proposal.metadata, copy->getModelMetadata());
    ASSERT_EQUAL(integrator.getTemperature(), copy->getTemperature());
    ASSERT_EQUAL(proposal.tau, copy->getStepSize());
    ASSERT_EQUAL_CONTAINERS(integrator.getAtomTypes(), copy->getAtomTypes());
    ASSERT_EQUAL_CONTAINERS(integrator.getChiralCentres(), copy->getChiralCentres());
    ASSERT_EQUAL(integrator.getNoiseDim(), copy->getNoiseDim());
    ASSERT_EQUAL(integrator.getModelNumAtoms(), copy->getModelNumAtoms());
    ASSERT_EQUAL(integrator.getNumAtomTypes(), copy->getNumAtomTypes());
    ASSERT_EQUAL(integrator.getIndependentProposals(), copy->getIndependentProposals());
    ASSERT_EQUAL(7, copy->getMaxProposalBatch());
    ASSERT(copy->getExplorationMode());
    ASSERT_EQUAL(123.0, copy->getExplorationThreshold());
    ASSERT_EQUAL(17, copy->getRandomNumberSeed());
    ASSERT_EQUAL(1 << 0, copy->getIntegrationForceGroups());
    ASSERT_EQUAL(2, copy->getModelThreads());
    ASSERT_EQUAL(string("cpu"), copy->getModelDevice());
    ASSERT_EQUAL(xml, serialize(*copy));

    // Same seed, same inputs: the same chain, bit for bit on Reference.
    integrator.setExplorationMode(false);
    copy->setExplorationMode(false);
    vector<Vec3> expected = positionsAfter(integrator, 100);
    vector<Vec3> found = positionsAfter(*copy, 100);
    ASSERT(integrator.getNumAccepted() > 0);
    for (int i = 0; i < 4; i++)
        ASSERT_EQUAL_VEC(expected[i], found[i], 0.0);
}

void testAlteredModelIsRefused() {
    string path = temporaryPath("altered.pt");
    writeProposalModel(GaussianTestProposal(), path);
    TimewarpIntegrator integrator(path, 300.0, {0});
    remove(path.c_str());
    string xml = serialize(integrator);
    // Change one character of the embedded model's base64.
    size_t model = xml.find(" model=\"");
    ASSERT(model != string::npos);
    size_t position = model + 100;
    xml[position] = xml[position] == 'A' ? 'B' : 'A';
    try {
        deserialize(xml);
    }
    catch (const OpenMMException& error) {
        ASSERT(string(error.what()).find("altered or damaged") != string::npos);
        return;
    }
    throw OpenMMException("an XML with an altered model was deserialized");
}

} // namespace

int main() {
    try {
        registerKernelFactories();
        testRoundTrip();
        testAlteredModelIsRefused();
    }
    catch (const exception& error) {
        cout << "exception: " << error.what() << endl;
        return 1;
    }
    cout << "Done" << endl;
    return 0;
}
