#include "TimewarpIntegrator.h"
#include "TimewarpKernels.h"
#include "internal/TimewarpModelFile.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/ContextImpl.h"
#include <cmath>
#include <string>
#include <sstream>

using namespace OpenMM;
using namespace TimewarpPlugin;
using namespace std;

namespace {

void checkTemperature(double temperature) {
    if (!(temperature > 0.0) || !isfinite(temperature))
        throw OpenMMException("TimewarpIntegrator: the temperature must be positive (in K), got " +
                              to_string(temperature));
}

} // namespace

TimewarpIntegrator::TimewarpIntegrator(const string& modelPath, double temperature,
                                       const vector<int>& atomTypes,
                                       const vector<int>& chiralCentres)
    : TimewarpIntegrator(loadModelFile(modelPath), modelPath, temperature, atomTypes,
                         chiralCentres) {
}

TimewarpIntegrator::TimewarpIntegrator(shared_ptr<const TimewarpModel> model,
                                       const string& modelPath, double temperature,
                                       const vector<int>& atomTypes,
                                       const vector<int>& chiralCentres)
    : model(model), modelPath(modelPath), temperature(temperature), atomTypes(atomTypes),
      chiralCentres(chiralCentres), explorationMode(false), explorationThreshold(300.0),
      randomNumberSeed(0), modelThreads(1), modelDevice("auto") {
    checkTemperature(temperature);
    const ModelAttributes& attributes = model->attributes;
    noiseDim = attributes.noiseDim;
    modelNumAtoms = attributes.numAtoms;
    numAtomTypes = attributes.numAtomTypes;
    independentProposals = attributes.independent;
    maxProposalBatch = independentProposals ? DEFAULT_INDEPENDENT_BATCH : DEFAULT_CONDITIONAL_BATCH;
    setStepSize(attributes.tau);
    stringstream identity;
    identity << "checksum " << (attributes.checksum.empty() ? "none" : attributes.checksum)
             << ", noise_dim " << noiseDim << ", atom types " << numAtomTypes << ", tau "
             << attributes.tau << (independentProposals ? ", independent" : "");
    modelIdentity = identity.str();
    if (atomTypes.empty())
        throw OpenMMException("TimewarpIntegrator: atomTypes is empty; give the model's atom-type "
                              "code of every particle (openmm_timewarp derives them from a Topology)");
    if (modelNumAtoms != 0 && (int) atomTypes.size() != modelNumAtoms)
        throw OpenMMException("TimewarpIntegrator: the model supports " + to_string(modelNumAtoms) +
                              " atoms but " + to_string(atomTypes.size()) +
                              " atom types were given; use a model trained for this molecule");
    for (int i = 0; i < (int) atomTypes.size(); i++)
        if (atomTypes[i] < 0 || atomTypes[i] >= numAtomTypes)
            throw OpenMMException("TimewarpIntegrator: atom type " + to_string(atomTypes[i]) +
                                  " of particle " + to_string(i) + " is outside the model's " +
                                  "vocabulary 0.." + to_string(numAtomTypes - 1));
    if (chiralCentres.size() % 4 != 0)
        throw OpenMMException("TimewarpIntegrator: chiralCentres must hold quadruples of particle "
                              "indices (its length must be a multiple of 4), got " +
                              to_string(chiralCentres.size()) + " indices");
}

const string& TimewarpIntegrator::getModelChecksum() const {
    return model->sha1;
}

const string& TimewarpIntegrator::getModelMetadata() const {
    return model->metadataJson;
}

void TimewarpIntegrator::setTemperature(double temperature) {
    checkTemperature(temperature);
    this->temperature = temperature;
}

void TimewarpIntegrator::setModelThreads(int threads) {
    if (threads < 0)
        throw OpenMMException("TimewarpIntegrator: the number of model threads must be at least 0 "
                              "(0: torch's own setting), got " + to_string(threads));
    modelThreads = threads;
}

void TimewarpIntegrator::setModelDevice(const string& device) {
    if (device != "auto" && device != "cpu")
        throw OpenMMException("TimewarpIntegrator: the model device must be \"auto\" (the "
                              "Context's GPU where there is one) or \"cpu\", got \"" + device +
                              "\"");
    modelDevice = device;
}

void TimewarpIntegrator::setMaxProposalBatch(int maxBatch) {
    if (maxBatch < 1)
        throw OpenMMException("TimewarpIntegrator: the maximum proposal batch must be at least 1, "
                              "got " + to_string(maxBatch));
    maxProposalBatch = maxBatch;
}

void TimewarpIntegrator::setExplorationMode(bool enabled, double threshold) {
    if (!isfinite(threshold) || threshold <= 0.0)
        throw OpenMMException("TimewarpIntegrator: the exploration threshold must be a positive "
                              "finite energy in kJ/mol (a proposal is accepted when it raises the "
                              "energy by less)");
    explorationMode = enabled;
    explorationThreshold = threshold;
}

double TimewarpIntegrator::getAcceptanceRate() const {
    return chain.numProposed == 0 ? 0.0 : (double) chain.numAccepted / chain.numProposed;
}

void TimewarpIntegrator::initialize(ContextImpl& contextRef) {
    if (owner != NULL && &contextRef.getOwner() != owner)
        throw OpenMMException("This Integrator is already bound to a context");
    const System& system = contextRef.getSystem();
    int numParticles = system.getNumParticles();
    if (system.getNumConstraints() > 0)
        throw OpenMMException("TimewarpIntegrator cannot sample a System with constraints (it has " +
                              to_string(system.getNumConstraints()) + "): create the System with "
                              "constraints=None and rigidWater=False");
    for (int i = 0; i < numParticles; i++)
        if (system.isVirtualSite(i))
            throw OpenMMException("TimewarpIntegrator cannot sample a System with virtual sites "
                                  "(particle " + to_string(i) + " is one): use a force field "
                                  "without extra particles");
    if (system.usesPeriodicBoundaryConditions())
        throw OpenMMException("TimewarpIntegrator does not support periodic systems: use a "
                              "non-periodic System (e.g. implicit solvent, nonbondedMethod=NoCutoff)");
    if ((int) atomTypes.size() != numParticles)
        throw OpenMMException("TimewarpIntegrator was given " + to_string(atomTypes.size()) +
                              " atom types but the System has " + to_string(numParticles) +
                              " particles: give one type per particle");
    if (modelNumAtoms != 0 && modelNumAtoms != numParticles)
        throw OpenMMException("TimewarpIntegrator: the model supports " + to_string(modelNumAtoms) +
                              " atoms but the System has " + to_string(numParticles) +
                              ": use a model trained for this molecule");
    for (int index : chiralCentres)
        if (index < 0 || index >= numParticles)
            throw OpenMMException("TimewarpIntegrator: chiral-centre index " + to_string(index) +
                                  " is outside the System's particles 0.." +
                                  to_string(numParticles - 1));
    context = &contextRef;
    owner = &contextRef.getOwner();
    kernel = context->getPlatform().createKernel(IntegrateTimewarpStepKernel::Name(), contextRef);
    kernel.getAs<IntegrateTimewarpStepKernel>().initialize(contextRef, *this);
    chain = TimewarpChainState();
    chain.seed(randomNumberSeed);
}

void TimewarpIntegrator::cleanup() {
    kernel = Kernel();
}

vector<string> TimewarpIntegrator::getKernelNames() {
    return {IntegrateTimewarpStepKernel::Name()};
}

void TimewarpIntegrator::stateChanged(State::DataType changed) {
    // Changed positions are caught by the kernel, which compares them with the chain's own.
    if (changed == State::Parameters || changed == State::Energy)
        chain.energyValid = false;
}

void TimewarpIntegrator::step(int steps) {
    if (context == NULL)
        throw OpenMMException("This Integrator is not bound to a context!");
    if (steps < 0)
        throw OpenMMException("TimewarpIntegrator::step: the number of steps must not be negative");
    // A step that throws leaves the Context and the chain exactly as they were.
    TimewarpChainState saved = chain;
    vector<Vec3> positions, velocities;
    context->getPositions(positions);
    context->getVelocities(velocities);
    double time = context->getTime();
    long long stepCount = context->getStepCount();
    try {
        kernel.getAs<IntegrateTimewarpStepKernel>().execute(*context, *this, chain, steps);
    }
    catch (...) {
        chain = saved;
        context->setPositions(positions);
        context->setVelocities(velocities);
        context->setTime(time);
        context->setStepCount(stepCount);
        throw;
    }
}

double TimewarpIntegrator::computeKineticEnergy() {
    return kernel.getAs<IntegrateTimewarpStepKernel>().computeKineticEnergy(*context, *this);
}

void TimewarpIntegrator::createCheckpoint(ostream& stream) const {
    chain.write(stream, modelIdentity);
}

void TimewarpIntegrator::loadCheckpoint(istream& stream) {
    chain.read(stream, (int) atomTypes.size(), modelIdentity);
}
