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

const int CHECKPOINT_VERSION = 3;

template <class T>
void writeValue(ostream& stream, const T& value) {
    stream.write((const char*) &value, sizeof(T));
}

template <class T>
T readValue(istream& stream) {
    T value;
    stream.read((char*) &value, sizeof(T));
    return value;
}

void writeVector(ostream& stream, const vector<double>& values) {
    writeValue<long long>(stream, values.size());
    stream.write((const char*) values.data(), values.size() * sizeof(double));
}

vector<double> readVector(istream& stream) {
    vector<double> values(readValue<long long>(stream));
    stream.read((char*) values.data(), values.size() * sizeof(double));
    return values;
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

void TimewarpChainState::write(ostream& stream) const {
    writeValue(stream, CHECKPOINT_VERSION);
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
    string text = random.str();
    writeValue<long long>(stream, text.size());
    stream.write(text.data(), text.size());
}

void TimewarpChainState::read(istream& stream, int numAtoms) {
    if (readValue<int>(stream) != CHECKPOINT_VERSION)
        throw OpenMMException("TimewarpIntegrator: the checkpoint was written by another version of "
                              "the plugin");
    TimewarpChainState state;
    for (long long* count : {&state.numSteps, &state.numProposed, &state.numAccepted,
                             &state.numRejectedNonFinite, &state.numRejectedChirality,
                             &state.numModelCalls, &state.adaptationProposed,
                             &state.adaptationAccepted})
        *count = readValue<long long>(stream);
    state.positions = readVector(stream);
    state.energyValid = readValue<bool>(stream);
    state.energy = readValue<double>(stream);
    if (readValue<bool>(stream)) {
        auto proposals = make_shared<ProposalBatch>();
        proposals->size = readValue<int>(stream);
        state.nextProposal = readValue<int>(stream);
        state.logQOffset = readValue<double>(stream);
        proposals->positions = readVector(stream);
        proposals->logQRatios = readVector(stream);
        if ((long long) state.positions.size() != 3LL * numAtoms ||
            (long long) proposals->positions.size() != 3LL * numAtoms * proposals->size ||
            (int) proposals->logQRatios.size() != proposals->size)
            throw OpenMMException("TimewarpIntegrator: the checkpoint's proposal cache does not "
                                  "match this System");
        state.batch = proposals;
    }
    string text(readValue<long long>(stream), ' ');
    stream.read(&text[0], text.size());
    stringstream random(text);
    random >> state.chainRandom.engine >> state.velocityRandom.engine;
    if (!stream || random.fail())
        throw OpenMMException("TimewarpIntegrator: the checkpoint is truncated or corrupt");
    state.modelSeconds = modelSeconds;
    state.energySeconds = energySeconds;
    *this = state;
}
