#ifndef OPENMM_TIMEWARP_INTEGRATOR_H_
#define OPENMM_TIMEWARP_INTEGRATOR_H_

#include "internal/TimewarpChainState.h"
#include "internal/windowsExportTimewarp.h"
#include "openmm/Integrator.h"
#include "openmm/Kernel.h"
#include <string>
#include <vector>

namespace TimewarpPlugin {

/**
 * A Metropolis-Hastings sampler of the Boltzmann distribution of a System, driven by a learned
 * proposal model (Timewarp).  One step is one MH iteration: the next proposal from a TorchScript
 * proposal model (see docs/contract.md) is accepted with probability
 * min(1, exp(-(U' - U)/kT + logQRatio)), where U comes from the Context's own energy.
 *
 * Proposals are drawn in batches from one model call and cached while they are rejected; an
 * acceptance or an outside change of the positions discards the cache.  The batch size adapts to
 * the running acceptance rate a as ceil(log 0.1 / log(1 - a)), bounded by setMaxProposalBatch().
 * In exploration mode (not exact) a proposal is accepted when U' - U is below a threshold.  A
 * proposal that inverts a chiral centre, or that is not finite, is rejected and counted.  After
 * every iteration velocities are drawn from the Maxwell-Boltzmann distribution and the time
 * advances by the model's tau (nominal time: this is a Markov chain, not dynamics).
 *
 * Systems with constraints, virtual sites or periodic boundary conditions are refused.
 */
class OPENMM_EXPORT_TIMEWARP TimewarpIntegrator : public OpenMM::Integrator {
public:
    /**
     * @param modelPath      a TorchScript proposal-model file (loaded with torch::jit::load only)
     * @param temperature    the temperature (K)
     * @param atomTypes      the model's atom-type code of every particle
     * @param chiralCentres  quadruples (a, b, c, d) of particle indices, flattened; the sign of
     *                       dot(b - a, cross(c - a, d - a)) of each must be kept
     */
    TimewarpIntegrator(const std::string& modelPath, double temperature,
                       const std::vector<int>& atomTypes,
                       const std::vector<int>& chiralCentres = std::vector<int>());
    const std::string& getModelPath() const {
        return modelPath;
    }
    /** The temperature (K). */
    double getTemperature() const {
        return temperature;
    }
    const std::vector<int>& getAtomTypes() const {
        return atomTypes;
    }
    /** The chiral centres as a flat list of quadruples of particle indices. */
    const std::vector<int>& getChiralCentres() const {
        return chiralCentres;
    }
    /** Standard-normal numbers the model consumes per atom per proposal. */
    int getNoiseDim() const {
        return noiseDim;
    }
    /** The atom count the model supports (0 for any). */
    int getModelNumAtoms() const {
        return modelNumAtoms;
    }
    int getNumAtomTypes() const {
        return numAtomTypes;
    }
    /**
     * Whether the model declares independence proposals: then a batch of proposals survives an
     * acceptance (the chain moves to one of them and goes on with the rest) and every model call
     * draws getMaxProposalBatch() proposals.
     */
    bool getIndependentProposals() const {
        return independentProposals;
    }
    int getMaxProposalBatch() const {
        return maxProposalBatch;
    }
    /** Bound the number of proposals drawn per model call (at least 1). */
    void setMaxProposalBatch(int maxBatch);
    bool getExplorationMode() const {
        return explorationMode;
    }
    /** The energy threshold of exploration mode (kJ/mol). */
    double getExplorationThreshold() const {
        return explorationThreshold;
    }
    /**
     * Switch exploration mode on or off.  In exploration mode a proposal is accepted when its
     * energy exceeds the current one by less than threshold (kJ/mol); the chain is then not exact.
     */
    void setExplorationMode(bool enabled, double threshold = 300.0);
    int getRandomNumberSeed() const {
        return randomNumberSeed;
    }
    /**
     * Set the seed of the generator of proposal noise, acceptance tests and velocities.  It takes
     * effect when a Context is created; 0 (the default) picks a different seed every time.
     */
    void setRandomNumberSeed(int seed) {
        randomNumberSeed = seed;
    }
    void step(int steps) override;

    long long getNumSteps() const {
        return chain.numSteps;
    }
    long long getNumProposed() const {
        return chain.numProposed;
    }
    long long getNumAccepted() const {
        return chain.numAccepted;
    }
    long long getNumRejectedNonFinite() const {
        return chain.numRejectedNonFinite;
    }
    long long getNumRejectedChirality() const {
        return chain.numRejectedChirality;
    }
    long long getNumModelCalls() const {
        return chain.numModelCalls;
    }
    /** Wall-clock seconds spent in model calls since the Context was created or the last reset. */
    double getModelSeconds() const {
        return chain.modelSeconds;
    }
    /** Wall-clock seconds spent in potential-energy evaluations, counted like getModelSeconds(). */
    double getEnergySeconds() const {
        return chain.energySeconds;
    }
    /** Accepted over proposed since the last reset (0 before any proposal). */
    double getAcceptanceRate() const;
    /** Reset the counters (the batch-size adaptation keeps its history). */
    void resetStatistics() {
        chain.resetStatistics();
    }
    /** Proposals cached for the current state (they serve the next steps while rejected). */
    int getNumCachedProposals() const {
        return chain.hasProposal() ? chain.batch->size - chain.nextProposal : 0;
    }
    /** The number of proposals the next model call will draw. */
    int getProposalBatchSize() const {
        return independentProposals ? maxProposalBatch : chain.adaptiveBatchSize(maxProposalBatch);
    }

protected:
    void initialize(OpenMM::ContextImpl& context) override;
    void cleanup() override;
    std::vector<std::string> getKernelNames() override;
    void stateChanged(OpenMM::State::DataType changed) override;
    double computeKineticEnergy() override;
    bool kineticEnergyRequiresForce() const override {
        return false;
    }
    void createCheckpoint(std::ostream& stream) const override;
    void loadCheckpoint(std::istream& stream) override;

private:
    std::string modelPath;
    // What checkpoints record of the model, so that another model's checkpoint is refused.
    std::string modelIdentity;
    double temperature;
    std::vector<int> atomTypes, chiralCentres;
    int noiseDim, modelNumAtoms, numAtomTypes;
    bool independentProposals;
    int maxProposalBatch;
    bool explorationMode;
    double explorationThreshold;
    int randomNumberSeed;
    TimewarpChainState chain;
    OpenMM::Kernel kernel;
};

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_INTEGRATOR_H_*/
