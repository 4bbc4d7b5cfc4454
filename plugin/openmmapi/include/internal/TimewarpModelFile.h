#ifndef OPENMM_TIMEWARP_MODEL_FILE_H_
#define OPENMM_TIMEWARP_MODEL_FILE_H_

#include <string>

namespace TimewarpPlugin {

/** The contract attributes of a proposal-model file (docs/contract.md). */
struct ModelAttributes {
    int noiseDim;
    double tau;
    int numAtoms;
    int numAtomTypes;
    // The proposal distribution is the same at every state that shares the proposals' external
    // frame (an independence proposal), so a batch stays valid after an acceptance.
    bool independent;
    // The SHA-256 that openmm_timewarp stored in the file (extra file timewarp.sha256); empty
    // for files without one.
    std::string checksum;
};

/**
 * Load a proposal-model file with torch::jit::load and read its contract attributes; throws an
 * OpenMMException that says what is wrong for a missing, unreadable or non-conforming file.
 */
ModelAttributes readModelAttributes(const std::string& path);

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_MODEL_FILE_H_*/
