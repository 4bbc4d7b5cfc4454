#ifndef OPENMM_TIMEWARP_CHAIN_STATE_H_
#define OPENMM_TIMEWARP_CHAIN_STATE_H_

#include "windowsExportTimewarp.h"
#include <iosfwd>
#include <memory>
#include <random>
#include <vector>

namespace TimewarpPlugin {

/** Proposals from one model call, for the configuration they were drawn from. */
struct ProposalBatch {
    int size = 0;
    std::vector<double> positions;   // size x numAtoms x 3 (nm)
    std::vector<double> logQRatios;  // size
};

/**
 * Everything a TimewarpIntegrator's chain carries from one step to the next: statistics, the
 * batch-size adaptation, the cached energy of the current state, the proposal cache and the
 * random number generator.  It is a value: copying it is how a step that throws is undone, and
 * writing it is what a checkpoint holds.
 */
struct OPENMM_EXPORT_TIMEWARP TimewarpChainState {
    long long numSteps = 0, numProposed = 0, numAccepted = 0;
    long long numRejectedNonFinite = 0, numRejectedChirality = 0, numModelCalls = 0;
    // Acceptance history that sets the batch size; not cleared by resetStatistics().
    long long adaptationProposed = 0, adaptationAccepted = 0;
    bool energyValid = false;
    double energy = 0.0;
    // Immutable once drawn, so copying the state shares rather than copies the proposals.
    std::shared_ptr<const ProposalBatch> batch;
    int nextProposal = 0;
    std::mt19937_64 generator;
    std::normal_distribution<double> normal;
    std::uniform_real_distribution<double> uniform;

    /** Seed the generator; seed 0 picks a nondeterministic seed. */
    void seed(int seed);
    bool hasProposal() const {
        return batch && nextProposal < batch->size;
    }
    void discardProposals() {
        batch.reset();
        nextProposal = 0;
    }
    /** Timewarp's batch size ceil(log 0.1 / log(1 - a)) for the running acceptance rate a. */
    int adaptiveBatchSize(int maxBatch) const;
    void resetStatistics();
    void write(std::ostream& stream) const;
    void read(std::istream& stream, int numAtoms);
};

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_CHAIN_STATE_H_*/
