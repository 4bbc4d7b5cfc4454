#include "internal/TimewarpChainState.h"
#include "openmm/OpenMMException.h"
#include <algorithm>
#include <cmath>
#include <istream>
#include <ostream>
#include <sstream>
#include <string>

using namespace OpenMM;
using namespace TimewarpPlugin;
using namespace std;

namespace {

const int CHECKPOINT_VERSION = 4;
// Bounds on counts read from a checkpoint, checked before anything is allocated.
const long long MAX_TEXT_BYTES = 1 << 20;
const int MAX_BATCH = 1 << 24;

[[noreturn]] void corrupt() {
    throw OpenMMException("TimewarpIntegrator: the checkpoint is truncated or corrupt");
}

template <class T>
void writeValue(ostream& stream, const T& value) {
    stream.write((const char*) &value, sizeof(T));
}

template <class T>
T readValue(istream& stream) {
    T value;
    stream.read((char*) &value, sizeof(T));
    if (!stream)
        corrupt();
    return value;
}

void writeVector(ostream& stream, const vector<double>& values) {
    writeValue<long long>(stream, values.size());
    stream.write((const char*) values.data(), values.size() * sizeof(double));
}

vector<double> readValues(istream& stream, long long count) {
    vector<double> values(count);
    stream.read((char*) values.data(), count * sizeof(double));
    if (!stream)
        corrupt();
    return values;
}

/** A vector of exactly ``expected`` values, as writeVector wrote it. */
vector<double> readVector(istream& stream, long long expected) {
    if (readValue<long long>(stream) != expected)
        corrupt();
    return readValues(stream, expected);
}

void writeText(ostream& stream, const string& text) {
    writeValue<long long>(stream, text.size());
    stream.write(text.data(), text.size());
}

string readText(istream& stream) {
    long long size = readValue<long long>(stream);
    if (size < 0 || size > MAX_TEXT_BYTES)
        corrupt();
    string text(size, ' ');
    stream.read(&text[0], size);
    if (!stream)
        corrupt();
    return text;
}

} // namespace

void TimewarpChainState::seed(int seed) {
    unsigned long long base = seed == 0 ? random_device()() : (unsigned long long) (unsigned int) seed;
    seed_seq chainSeed{base, 1ULL}, velocitySeed{base, 2ULL};
    chainRandom.engine.seed(chainSeed);
    velocityRandom.engine.seed(velocitySeed);
}

int TimewarpChainState::adaptiveBatchSize(int maxBatch) const {
    // Prior: no acceptance yet, so the batch starts at the maximum and shrinks as proposals are
    // accepted; K proposals then hold an acceptance with probability about 0.9.
    double rate = (double) adaptationAccepted / (adaptationProposed + 1);
    if (rate <= 0.0)
        return maxBatch;
    if (rate >= 1.0)
        return 1;
    double size = ceil(log(0.1) / log1p(-rate));
    return (int) max(1.0, min((double) maxBatch, size));
}

void TimewarpChainState::resetStatistics() {
    numSteps = numProposed = numAccepted = 0;
    numRejectedNonFinite = numRejectedChirality = numModelCalls = 0;
    modelSeconds = energySeconds = 0.0;
}

void TimewarpChainState::write(ostream& stream, const string& modelIdentity) const {
    writeValue(stream, CHECKPOINT_VERSION);
    writeText(stream, modelIdentity);
    for (long long count : {numSteps, numProposed, numAccepted, numRejectedNonFinite,
                            numRejectedChirality, numModelCalls, adaptationProposed,
                            adaptationAccepted})
        writeValue(stream, count);
    writeVector(stream, positions);
    writeValue(stream, energyValid);
    writeValue(stream, energy);
    writeValue(stream, hasProposal());
    if (hasProposal()) {
        writeValue(stream, batch->size);
        writeValue(stream, nextProposal);
        writeValue(stream, logQOffset);
        writeVector(stream, batch->positions);
        writeVector(stream, batch->logQRatios);
    }
    stringstream random;
    random << chainRandom.engine << ' ' << velocityRandom.engine;
    writeText(stream, random.str());
}

void TimewarpChainState::read(istream& stream, int numAtoms, const string& modelIdentity) {
    if (readValue<int>(stream) != CHECKPOINT_VERSION)
        throw OpenMMException("TimewarpIntegrator: the checkpoint was written by another version of "
                              "the plugin");
    string recorded = readText(stream);
    if (recorded != modelIdentity)
        throw OpenMMException("TimewarpIntegrator: the checkpoint was written with another proposal "
                              "model (" + recorded + "; this integrator's: " + modelIdentity + ")");
    TimewarpChainState state;
    for (long long* count : {&state.numSteps, &state.numProposed, &state.numAccepted,
                             &state.numRejectedNonFinite, &state.numRejectedChirality,
                             &state.numModelCalls, &state.adaptationProposed,
                             &state.adaptationAccepted})
        if ((*count = readValue<long long>(stream)) < 0)
            corrupt();
    // Positions: none before the first step, else one per particle.
    long long numPositions = readValue<long long>(stream);
    if (numPositions != 0 && numPositions != 3LL * numAtoms)
        throw OpenMMException("TimewarpIntegrator: the checkpoint is of a System with another "
                              "number of particles");
    state.positions = readValues(stream, numPositions);
    state.energyValid = readValue<bool>(stream);
    state.energy = readValue<double>(stream);
    if (readValue<bool>(stream)) {
        auto proposals = make_shared<ProposalBatch>();
        proposals->size = readValue<int>(stream);
        state.nextProposal = readValue<int>(stream);
        state.logQOffset = readValue<double>(stream);
        if (numPositions == 0 || proposals->size < 1 || proposals->size > MAX_BATCH ||
            state.nextProposal < 0 || state.nextProposal > proposals->size)
            corrupt();
        proposals->positions = readVector(stream, 3LL * numAtoms * proposals->size);
        proposals->logQRatios = readVector(stream, proposals->size);
        state.batch = proposals;
    }
    stringstream random(readText(stream));
    random >> state.chainRandom.engine >> state.velocityRandom.engine;
    if (random.fail())
        corrupt();
    state.modelSeconds = modelSeconds;
    state.energySeconds = energySeconds;
    *this = state;
}
