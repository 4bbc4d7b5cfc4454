#include "TorchTimewarpKernels.h"
#include "internal/TimewarpModelFile.h"
#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include "openmm/reference/SimTKOpenMMRealType.h"
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <chrono>
#include <cmath>
#include <sstream>
#include <torch/cuda.h>

using namespace OpenMM;
using namespace TimewarpPlugin;
using namespace std;

namespace {

double signedVolume(const Vec3& a, const Vec3& b, const Vec3& c, const Vec3& d) {
    return (b - a).dot((c - a).cross(d - a));
}

double secondsSince(chrono::steady_clock::time_point start) {
    return chrono::duration<double>(chrono::steady_clock::now() - start).count();
}

bool samePositions(const vector<Vec3>& positions, const vector<double>& flat) {
    if (flat.size() != 3 * positions.size())
        return false;
    for (size_t i = 0; i < positions.size(); i++)
        for (int k = 0; k < 3; k++)
            if (positions[i][k] != flat[3 * i + k])
                return false;
    return true;
}

string shapeOf(const torch::Tensor& tensor) {
    stringstream text;
    text << tensor.sizes() << " " << tensor.dtype();
    return text.str();
}

[[noreturn]] void brokenModel(const TimewarpIntegrator& integrator, const string& problem) {
    throw OpenMMException("TimewarpIntegrator: the proposal model " + integrator.getModelPath() +
                          " broke the contract: " + problem +
                          " (see docs/contract.md; this is a broken model, not a rejection)");
}

/** Runs the model with its own torch thread count and restores the process's afterwards. */
class ModelThreadsGuard {
public:
    explicit ModelThreadsGuard(int threads) : previous(at::get_num_threads()) {
        changed = threads > 0 && threads != previous;
        if (changed)
            at::set_num_threads(threads);
    }
    ~ModelThreadsGuard() {
        if (changed)
            at::set_num_threads(previous);
    }

private:
    int previous;
    bool changed;
};

} // namespace

void TorchIntegrateTimewarpStepKernel::initialize(ContextImpl& context,
                                                  const TimewarpIntegrator& integrator) {
    torch::Device device = torch::kCPU;
    if (integrator.getModelDevice() == "auto" && context.getPlatform().getName() == "CUDA" &&
        torch::cuda::is_available()) {
        const string& index =
            context.getPlatform().getPropertyValue(context.getOwner(), "DeviceIndex");
        device = torch::Device(torch::kCUDA, index.empty() ? 0 : stoi(index));
    }
    // The integrator loaded the model; the Context's kernel only moves it to its device.
    try {
        model = integrator.getModel().proposal->onDevice(device);
    }
    catch (const exception& error) {
        throw OpenMMException("TimewarpIntegrator: cannot move the proposal model " +
                              integrator.getModelPath() + " to " + device.str() + ": " +
                              error.what());
    }
    const vector<int>& types = integrator.getAtomTypes();
    atomTypes = torch::tensor(vector<int64_t>(types.begin(), types.end()), torch::kInt64)
                    .to(model->device());
    const System& system = context.getSystem();
    inverseSqrtMasses.resize(system.getNumParticles());
    for (int i = 0; i < system.getNumParticles(); i++) {
        double mass = system.getParticleMass(i);
        inverseSqrtMasses[i] = mass > 0.0 ? 1.0 / sqrt(mass) : 0.0;
    }
}

void TorchIntegrateTimewarpStepKernel::drawProposals(const TimewarpIntegrator& integrator,
                                                     TimewarpChainState& chain,
                                                     const vector<Vec3>& positions) {
    int numAtoms = positions.size();
    int batchSize = integrator.getProposalBatchSize();
    int noiseDim = integrator.getNoiseDim();
    torch::Tensor current = torch::empty({numAtoms, 3}, torch::kFloat32);
    auto currentData = current.accessor<float, 2>();
    for (int i = 0; i < numAtoms; i++)
        for (int k = 0; k < 3; k++)
            currentData[i][k] = (float) positions[i][k];
    // torch's vectorised sampler, seeded from the chain's engine: fast, and the engine stays the
    // whole random state of the chain.
    at::Generator noiseGenerator = at::make_generator<at::CPUGeneratorImpl>(chain.chainRandom.engine());
    torch::Tensor noise =
        torch::randn({batchSize, numAtoms, noiseDim}, noiseGenerator, torch::kFloat32);

    vector<torch::Tensor> output;
    auto start = chrono::steady_clock::now();
    try {
        torch::NoGradGuard noGrad;
        ModelThreadsGuard threads(integrator.getModelThreads());
        torch::Device device = model->device();
        output = model->forward(current.to(device), atomTypes, noise.to(device));
    }
    catch (const ModelOutputError& error) {
        brokenModel(integrator, error.what());
    }
    catch (const exception& error) {
        brokenModel(integrator, string("forward raised an error: ") + error.what());
    }
    chain.numModelCalls++;
    if (output.size() != 2)
        brokenModel(integrator, "forward must return a tuple (proposals, logQRatio)");
    torch::Tensor proposals = output[0];
    torch::Tensor logQRatios = output[1];
    if (proposals.scalar_type() != torch::kFloat32 || proposals.dim() != 3 ||
        proposals.size(0) != batchSize || proposals.size(1) != numAtoms || proposals.size(2) != 3)
        brokenModel(integrator, "proposals must be float32 of shape [" + to_string(batchSize) + ", " +
                                    to_string(numAtoms) + ", 3], got " + shapeOf(proposals));
    if (logQRatios.scalar_type() != torch::kFloat32 || logQRatios.dim() != 1 ||
        logQRatios.size(0) != batchSize)
        brokenModel(integrator, "logQRatio must be float32 of shape [" + to_string(batchSize) +
                                    "], got " + shapeOf(logQRatios));
    proposals = proposals.to(torch::kCPU, torch::kFloat64).contiguous();
    logQRatios = logQRatios.to(torch::kCPU, torch::kFloat64).contiguous();
    chain.modelSeconds += secondsSince(start);  // after the copy back, which waits for a GPU
    auto batch = make_shared<ProposalBatch>();
    batch->size = batchSize;
    batch->positions.assign(proposals.data_ptr<double>(),
                            proposals.data_ptr<double>() + proposals.numel());
    batch->logQRatios.assign(logQRatios.data_ptr<double>(),
                             logQRatios.data_ptr<double>() + batchSize);
    chain.batch = batch;
    chain.nextProposal = 0;
    chain.logQOffset = 0.0;
}

bool TorchIntegrateTimewarpStepKernel::invertsChirality(const TimewarpIntegrator& integrator,
                                                        const vector<Vec3>& current,
                                                        const double* proposal) const {
    const vector<int>& centres = integrator.getChiralCentres();
    auto proposed = [proposal](int i) {
        return Vec3(proposal[3 * i], proposal[3 * i + 1], proposal[3 * i + 2]);
    };
    for (size_t q = 0; q < centres.size(); q += 4) {
        int a = centres[q], b = centres[q + 1], c = centres[q + 2], d = centres[q + 3];
        double before = signedVolume(current[a], current[b], current[c], current[d]);
        double after = signedVolume(proposed(a), proposed(b), proposed(c), proposed(d));
        if (before * after < 0.0)
            return true;
    }
    return false;
}

void TorchIntegrateTimewarpStepKernel::execute(ContextImpl& context,
                                               const TimewarpIntegrator& integrator,
                                               TimewarpChainState& chain, int steps) {
    if (steps == 0)
        return;
    int numAtoms = context.getSystem().getNumParticles();
    int groups = integrator.getIntegrationForceGroups();
    double kT = BOLTZ * integrator.getTemperature();
    bool exploration = integrator.getExplorationMode();
    double threshold = integrator.getExplorationThreshold();
    vector<Vec3> current, trial(numAtoms), velocities(numAtoms);
    context.getPositions(current);
    if (!samePositions(current, chain.positions)) {
        chain.discardProposals();
        chain.energyValid = false;
    }
    for (int i = 0; i < numAtoms; i++)
        if (!isfinite(current[i][0]) || !isfinite(current[i][1]) || !isfinite(current[i][2]))
            throw OpenMMException("TimewarpIntegrator: particle " + to_string(i) +
                                  " has a non-finite position; the Metropolis-Hastings test "
                                  "needs a finite state (nothing was changed)");
    if (!chain.energyValid) {
        auto start = chrono::steady_clock::now();
        double energy = context.calcForcesAndEnergy(false, true, groups);
        chain.energySeconds += secondsSince(start);
        if (!isfinite(energy)) {
            stringstream text;
            text << "TimewarpIntegrator: the current state's potential energy is " << energy
                 << " kJ/mol; the Metropolis-Hastings test needs a finite one (overlapping atoms? "
                    "minimise the energy first; nothing was changed)";
            throw OpenMMException(text.str());
        }
        chain.energy = energy;
        chain.energyValid = true;
    }
    // The Context holds `trial` after a rejection; `current` goes back in once, at the end.
    bool contextHoldsCurrent = true;
    for (int iteration = 0; iteration < steps; iteration++) {
        if (!chain.hasProposal())
            drawProposals(integrator, chain, current);
        int index = chain.nextProposal++;
        const double* proposal = &chain.batch->positions[3LL * numAtoms * index];
        double logQRatio = chain.batch->logQRatios[index] - chain.logQOffset;
        chain.numProposed++;
        chain.adaptationProposed++;
        bool finite = isfinite(logQRatio);
        for (int i = 0; i < 3 * numAtoms && finite; i++)
            finite = isfinite(proposal[i]);
        bool accepted = false;
        double trialEnergy = 0.0;
        if (!finite)
            chain.numRejectedNonFinite++;
        else if (invertsChirality(integrator, current, proposal))
            chain.numRejectedChirality++;
        else {
            for (int i = 0; i < numAtoms; i++)
                trial[i] = Vec3(proposal[3 * i], proposal[3 * i + 1], proposal[3 * i + 2]);
            auto start = chrono::steady_clock::now();
            context.setPositions(trial);
            contextHoldsCurrent = false;
            trialEnergy = context.calcForcesAndEnergy(false, true, groups);
            chain.energySeconds += secondsSince(start);
            double deltaEnergy = trialEnergy - chain.energy;
            if (!isfinite(trialEnergy))
                chain.numRejectedNonFinite++;
            else if (exploration)
                accepted = deltaEnergy < threshold;
            else {
                double logAcceptance = -deltaEnergy / kT + logQRatio;
                accepted = logAcceptance >= 0.0 || chain.chainRandom.uniform() < exp(logAcceptance);
            }
        }
        if (accepted) {
            current.swap(trial);
            contextHoldsCurrent = true;
            chain.energy = trialEnergy;
            chain.numAccepted++;
            chain.adaptationAccepted++;
            if (integrator.getIndependentProposals())
                chain.logQOffset = chain.batch->logQRatios[index];
            else
                chain.discardProposals();
        }
        chain.numSteps++;
    }
    if (!contextHoldsCurrent)
        context.setPositions(current);
    context.getPositions(current);  // as the platform stores them
    chain.positions.assign(&current[0][0], &current[0][0] + 3 * numAtoms);
    // Each iteration ends with fresh Maxwell-Boltzmann velocities; only the last draw is seen.
    chain.velocityRandom.fill(&velocities[0][0], 3LL * numAtoms);
    double sqrtKT = sqrt(kT);
    for (int i = 0; i < numAtoms; i++)
        velocities[i] *= sqrtKT * inverseSqrtMasses[i];
    context.setVelocities(velocities);
    context.setTime(context.getTime() + steps * integrator.getStepSize());
    context.setStepCount(context.getStepCount() + steps);
}

double TorchIntegrateTimewarpStepKernel::computeKineticEnergy(ContextImpl& context,
                                                              const TimewarpIntegrator& integrator) {
    const System& system = context.getSystem();
    vector<Vec3> velocities;
    context.getVelocities(velocities);
    double energy = 0.0;
    for (int i = 0; i < system.getNumParticles(); i++)
        energy += 0.5 * system.getParticleMass(i) * velocities[i].dot(velocities[i]);
    return energy;
}
