#ifndef OPENMM_TIMEWARP_INTEGRATOR_H_
#define OPENMM_TIMEWARP_INTEGRATOR_H_

#include "internal/TimewarpChainState.h"
#include "internal/windowsExportTimewarp.h"
#include "openmm/Integrator.h"
#include "openmm/Kernel.h"
#include <memory>
#include <string>
#include <vector>

namespace TimewarpPlugin {

struct TimewarpModel;
class TimewarpIntegratorProxy;

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
 * The model file (TorchScript, or an AOTInductor package) is read and loaded once, by the
 * constructor; the Context's kernel receives that model, and XML serialization embeds the file's
 * bytes with their SHA-1.  On GPU platforms use
 * mixed or double precision: the MH test is exact only to the precision of the energies.
 *
 * Systems with constraints, virtual sites or periodic boundary conditions are refused.
 */
class OPENMM_EXPORT_TIMEWARP TimewarpIntegrator : public OpenMM::Integrator {
public:
    /**
     * Create a TimewarpIntegrator.  The model file is read and loaded here, once; the Context's
     * kernel receives that model, and XML serialization embeds the file's bytes.
     *
     * @param modelPath      a proposal-model file: TorchScript (loaded with torch::jit::load only)
     *                       or an AOTInductor package (its compiled code is loaded and run)
     * @param temperature    the temperature (K)
     * @param atomTypes      the model's atom-type code of every particle
     * @param chiralCentres  quadruples (a, b, c, d) of particle indices, flattened; the sign of
     *                       dot(b - a, cross(c - a, d - a)) of each must be kept
     */
    TimewarpIntegrator(const std::string& modelPath, double temperature,
                       const std::vector<int>& atomTypes,
                       const std::vector<int>& chiralCentres = std::vector<int>());
    /**
     * The path the proposal model was read from.  After XML deserialization it is the path
     * recorded when the integrator was serialized, which need not exist: the model itself
     * travels inside the XML.
     */
    const std::string& getModelPath() const {
        return modelPath;
    }
    /** The hex SHA-1 digest of the proposal-model file's bytes. */
    const std::string& getModelChecksum() const;
    /** The model's metadata (the file's timewarp.json, see docs/contract.md), or "" if it has none. */
    const std::string& getModelMetadata() const;
    /** The temperature (K) of the Boltzmann distribution sampled. */
    double getTemperature() const {
        return temperature;
    }
    /**
     * Set the temperature (K).  The next Metropolis-Hastings test and velocity draw use it;
     * cached proposals stay valid, as the model does not depend on the temperature.
     */
    void setTemperature(double temperature);
    /** The model's atom-type code of every particle. */
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
    /** The size of the model's atom-type vocabulary. */
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
    /**
     * The largest number of proposals drawn per model call.  The default depends on the model:
     * DEFAULT_INDEPENDENT_BATCH for independence models (every call draws that many, and large
     * batches cost the least per proposal), DEFAULT_CONDITIONAL_BATCH as the bound of the adaptive
     * batch size of state-dependent ones (an acceptance discards the rest of their batch).
     */
    int getMaxProposalBatch() const {
        return maxProposalBatch;
    }
    /** Bound the number of proposals drawn per model call (at least 1); overrides the default. */
    void setMaxProposalBatch(int maxBatch);
    /** Whether exploration mode (accept by an energy threshold; not exact) is on. */
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
    /** The seed of the integrator's random numbers (0: a different one for every Context). */
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
    /**
     * The number of torch threads the model runs with on the CPU, or 0 for torch's own setting
     * (torch.get_num_threads()).
     */
    int getModelThreads() const {
        return modelThreads;
    }
    /**
     * Set the number of torch threads for the model's calls on the CPU (0: torch's own setting).
     * The default, 1, measured fastest for the bundled models: as fast as more threads on an idle
     * machine, many times faster on a busy one (docs/benchmarks.md).  Torch's setting is
     * restored after each call, so the rest of the process keeps its own.
     */
    void setModelThreads(int threads);
    /** Where the model runs: "auto" (the default) or "cpu"; see setModelDevice(). */
    const std::string& getModelDevice() const {
        return modelDevice;
    }
    /**
     * Where the model runs: "auto" puts it on the Context's GPU when the platform is CUDA and
     * torch has CUDA (else on the CPU); "cpu" keeps it on the CPU, which is faster for small
     * models whose batches are small.  It takes effect when a Context is created.
     */
    void setModelDevice(const std::string& device);
    /** Run `steps` Metropolis-Hastings iterations, each with one proposal. */
    void step(int steps) override;

    /** Iterations run since the Context was created or the last resetStatistics(). */
    long long getNumSteps() const {
        return chain.numSteps;
    }
    /** Proposals tested, counted like getNumSteps(). */
    long long getNumProposed() const {
        return chain.numProposed;
    }
    /** Proposals accepted, counted like getNumSteps(). */
    long long getNumAccepted() const {
        return chain.numAccepted;
    }
    /** Proposals rejected because positions, energy or logQRatio were not finite. */
    long long getNumRejectedNonFinite() const {
        return chain.numRejectedNonFinite;
    }
    /** Proposals rejected because they inverted a chiral centre. */
    long long getNumRejectedChirality() const {
        return chain.numRejectedChirality;
    }
    /** Calls of the proposal model, counted like getNumSteps(). */
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

    /** The default maximum batch of independence models (measured in docs/benchmarks.md). */
    static const int DEFAULT_INDEPENDENT_BATCH = 1024;
    /** The default bound of the adaptive batch size of state-dependent models. */
    static const int DEFAULT_CONDITIONAL_BATCH = 64;

#ifndef SWIG
    /** The loaded proposal model (for the kernel; not part of the Python API). */
    const TimewarpModel& getModel() const {
        return *model;
    }
#endif

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
    friend class TimewarpIntegratorProxy;
    /** What the public constructor does, from an already loaded model (XML deserialization). */
    TimewarpIntegrator(std::shared_ptr<const TimewarpModel> model, const std::string& modelPath,
                       double temperature, const std::vector<int>& atomTypes,
                       const std::vector<int>& chiralCentres);
    std::shared_ptr<const TimewarpModel> model;
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
    int modelThreads;
    std::string modelDevice;
    TimewarpChainState chain;
    OpenMM::Kernel kernel;
};

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_INTEGRATOR_H_*/
