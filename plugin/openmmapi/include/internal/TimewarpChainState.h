#ifndef OPENMM_TIMEWARP_CHAIN_STATE_H_
#define OPENMM_TIMEWARP_CHAIN_STATE_H_

#include "windowsExportTimewarp.h"
#include <cmath>
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
 * Standard-normal numbers by the Box-Muller transform of 64-bit Mersenne Twister output, in pairs,
 * so the engine is the whole state (no spare number to carry).
 */
struct OPENMM_EXPORT_TIMEWARP NormalGenerator {
    std::mt19937_64 engine;
    /** A uniform number in (0, 1]. */
    double uniform() {
        return ((engine() >> 11) + 1) * 0x1.0p-53;
    }
    /** Fill values[0, count) with independent standard-normal numbers. */
    template <class T>
    void fill(T* values, long long count);
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
    // Wall-clock seconds in model calls and in energy evaluations: facts about this process, so
    // cleared by resetStatistics() but neither written to nor read from checkpoints.
    double modelSeconds = 0.0, energySeconds = 0.0;
    // Acceptance history that sets the batch size; not cleared by resetStatistics().
    long long adaptationProposed = 0, adaptationAccepted = 0;
    // The positions (nm, flattened) that the cached energy and proposals belong to: a step that
    // finds other positions in the Context (set from outside, or by loading a checkpoint of
    // another state) discards both.
    std::vector<double> positions;
    bool energyValid = false;
    double energy = 0.0;
    // Immutable once drawn, so copying the state shares rather than copies the proposals.
    std::shared_ptr<const ProposalBatch> batch;
    int nextProposal = 0;
    // The batch's logQRatio of the state the chain holds (0 for the state the batch was drawn at).
    // With independence proposals, logQRatio = log q(x) - log q(x'), so after moving to one of its
    // proposals the ratio of proposal j is logQRatios[j] - logQOffset.
    double logQOffset = 0.0;
    // Seeds of proposal noise, and acceptance tests.  Velocities have their own generator, so the chain
    // does not depend on how steps are grouped into step() calls.
    NormalGenerator chainRandom, velocityRandom;

    /** Seed both generators; seed 0 picks a nondeterministic seed. */
    void seed(int seed);
    bool hasProposal() const {
        return batch && nextProposal < batch->size;
    }
    void discardProposals() {
        batch.reset();
        nextProposal = 0;
        logQOffset = 0.0;
    }
    /** Timewarp's batch size ceil(log 0.1 / log(1 - a)) for the running acceptance rate a. */
    int adaptiveBatchSize(int maxBatch) const;
    void resetStatistics();
    /** Write the chain to a checkpoint that names the model it was sampled with. */
    void write(std::ostream& stream, const std::string& modelIdentity) const;
    /** Read a checkpoint; throws an OpenMMException, leaving the chain as it was, if the
     * checkpoint is truncated, corrupt, or of another model or System. */
    void read(std::istream& stream, int numAtoms, const std::string& modelIdentity);
};

template <class T>
void NormalGenerator::fill(T* values, long long count) {
    const double twoPi = 6.283185307179586;
    for (long long i = 0; i < count; i += 2) {
        double radius = std::sqrt(-2.0 * std::log(uniform()));
        double angle = twoPi * uniform();
        values[i] = (T) (radius * std::cos(angle));
        if (i + 1 < count)
            values[i + 1] = (T) (radius * std::sin(angle));
    }
}

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_CHAIN_STATE_H_*/
