#ifndef OPENMM_TIMEWARP_TEST_MODELS_H_
#define OPENMM_TIMEWARP_TEST_MODELS_H_

#include <string>

namespace TimewarpPlugin {

/**
 * A Gaussian autoregressive proposal for the plugin's tests, written by libtorch so that the tests
 * need no Python: x' = rho x + sqrt(1 - rho^2) scale noise, which is reversible with respect to
 * N(0, scale^2 I), so that logQRatio = (|x'|^2 - |x|^2) / (2 scale^2).  rho = 0 gives an
 * independence proposal (the file then declares `independent`).
 */
struct GaussianTestProposal {
    int numAtoms = 1;
    double scale = 0.1;       // nm
    double rho = 0.0;
    double ratioSign = 1.0;   // -1 flips logQRatio: a broken model whose chain must be biased
    double tau = 2.0;         // ps
    std::string metadata = "{\"name\": \"gaussian-test-proposal\"}";
};

/** Write `proposal` as a TorchScript proposal-model file (docs/contract.md) to `path`. */
void writeProposalModel(const GaussianTestProposal& proposal, const std::string& path);

/** A path for a temporary file in the system's temporary folder, unique to this process. */
std::string temporaryPath(const std::string& name);

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_TEST_MODELS_H_*/
