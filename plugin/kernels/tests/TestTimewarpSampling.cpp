/**
 * The Metropolis-Hastings chain samples the Boltzmann distribution exactly: a particle in a 3-D
 * harmonic well, whose positions are Gaussian with variance kT / k per coordinate, sampled with a
 * conditional and an independence proposal on the Reference platform.  Controls: the same chains
 * with logQRatio flipped must be detected as biased by the same test.
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
#include "openmm/reference/SimTKOpenMMRealType.h"
#include <cmath>
#include <cstdio>
#include <iostream>
#include <vector>

using namespace OpenMM;
using namespace TimewarpPlugin;
using namespace std;

extern "C" void registerKernelFactories();

namespace {

const double TEMPERATURE = 300.0;                  // K
const double SIGMA = 0.1;                          // nm: the exact spread of each coordinate
const double SPRING = BOLTZ * TEMPERATURE / (SIGMA * SIGMA);  // kJ/mol/nm^2
const int NUM_BATCHES = 40;                        // batch means for the standard errors
const int BATCH_LENGTH = 500;                      // steps, many autocorrelation times

System harmonicWell() {
    System system;
    system.addParticle(12.0);
    CustomExternalForce* force = new CustomExternalForce("0.5*k*(x^2+y^2+z^2)");
    force->addGlobalParameter("k", SPRING);
    force->addParticle(0);
    system.addForce(force);
    return system;
}

/** The mean of the batch means of `values` and its standard error. */
pair<double, double> batchMean(const vector<double>& values) {
    vector<double> means(NUM_BATCHES, 0.0);
    for (int i = 0; i < (int) values.size(); i++)
        means[i / BATCH_LENGTH] += values[i] / BATCH_LENGTH;
    double mean = 0.0, squares = 0.0;
    for (double m : means)
        mean += m / NUM_BATCHES;
    for (double m : means)
        squares += (m - mean) * (m - mean);
    return {mean, sqrt(squares / (NUM_BATCHES - 1) / NUM_BATCHES)};
}

struct Moments {
    double mean, meanError;           // of the coordinates (exact: 0)
    double variance, varianceError;   // of each coordinate (exact: SIGMA^2)
    double acceptance;
};

/** Sample the well with `proposal` and return the moments of the chain's positions. */
Moments sample(const GaussianTestProposal& proposal, int seed) {
    string path = temporaryPath("gaussian-proposal.pt");
    writeProposalModel(proposal, path);
    TimewarpIntegrator integrator(path, TEMPERATURE, {0});
    remove(path.c_str());
    integrator.setRandomNumberSeed(seed);
    System system = harmonicWell();
    Context context(system, integrator, Platform::getPlatformByName("Reference"));
    context.setPositions({Vec3(0.05, -0.05, 0.1)});
    integrator.step(200);  // burn-in
    vector<double> coordinates, squares;
    for (int i = 0; i < NUM_BATCHES * BATCH_LENGTH; i++) {
        integrator.step(1);
        Vec3 x = context.getState(State::Positions).getPositions()[0];
        coordinates.push_back((x[0] + x[1] + x[2]) / 3.0);
        squares.push_back(x.dot(x) / 3.0);
    }
    auto [mean, meanError] = batchMean(coordinates);
    auto [variance, varianceError] = batchMean(squares);
    return {mean, meanError, variance, varianceError, integrator.getAcceptanceRate()};
}

/** Whether the chain's moments agree with the exact ones within four standard errors. */
bool agreesWithBoltzmann(const Moments& moments, const string& label) {
    cout << label << ": acceptance " << moments.acceptance << ", mean " << moments.mean << " +- "
         << moments.meanError << " (exact 0), variance " << moments.variance << " +- "
         << moments.varianceError << " (exact " << SIGMA * SIGMA << ")" << endl;
    return abs(moments.mean) < 4.0 * moments.meanError &&
           abs(moments.variance - SIGMA * SIGMA) < 4.0 * moments.varianceError;
}

void testSamplesTheBoltzmannDistribution(double rho, const string& label) {
    GaussianTestProposal proposal;
    proposal.scale = 1.5 * SIGMA;  // a proposal wider than the target: the MH test shapes it
    proposal.rho = rho;
    Moments exact = sample(proposal, 11);
    ASSERT(exact.acceptance > 0.2 && exact.acceptance < 0.95);
    ASSERT(agreesWithBoltzmann(exact, label));
    // Flipped logQRatio: the chain then samples pi q^2, variance SIGMA^2 / 1.89 per coordinate.
    proposal.ratioSign = -1.0;
    Moments flipped = sample(proposal, 11);
    ASSERT(!agreesWithBoltzmann(flipped, label + ", logQRatio flipped"));
}

/** The integrator hands its loaded model to the kernel: a Context never reads the file. */
void testContextDoesNotReadTheModelFile() {
    string path = temporaryPath("read-once.pt");
    writeProposalModel(GaussianTestProposal(), path);
    TimewarpIntegrator integrator(path, TEMPERATURE, {0});
    remove(path.c_str());
    System system = harmonicWell();
    Context context(system, integrator, Platform::getPlatformByName("Reference"));
    context.setPositions({Vec3(0.0, 0.0, 0.0)});
    integrator.step(20);
    context.reinitialize(true);  // a new kernel, initialised without the file; the chain kept
    integrator.step(20);
    ASSERT_EQUAL(40, integrator.getNumSteps());
    ASSERT(integrator.getNumModelCalls() > 0);
}

} // namespace

int main() {
    try {
        registerKernelFactories();
        testSamplesTheBoltzmannDistribution(0.5, "conditional proposal");
        testSamplesTheBoltzmannDistribution(0.0, "independence proposal");
        testContextDoesNotReadTheModelFile();
    }
    catch (const exception& error) {
        cout << "exception: " << error.what() << endl;
        return 1;
    }
    cout << "Done" << endl;
    return 0;
}
