#ifndef OPENMM_TIMEWARP_MODEL_FILE_H_
#define OPENMM_TIMEWARP_MODEL_FILE_H_

#include "internal/ProposalModel.h"
#include <memory>
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
    // The SHA-256 that openmm_timewarp stored in the file (extra file timewarp.sha256, or the
    // package metadata's entry of that name); empty for files without one.
    std::string checksum;
};

/**
 * A proposal model loaded once: the file's bytes (what serialization embeds), their SHA-1, the
 * model (a TorchScript module or an AOTInductor package, on the CPU until a kernel moves it to
 * its device), its contract attributes and its metadata (`timewarp.json`).  The integrator owns
 * it and hands the model to its kernel, so a Context never reads the file again.
 */
struct TimewarpModel {
    std::string source;  // the path it was read from, for messages
    std::string bytes;
    std::string sha1;    // hex digest of bytes
    std::shared_ptr<ProposalModel> proposal;
    ModelAttributes attributes;
    std::string metadataJson;  // empty when the file has none
};

/**
 * Read a proposal-model file and load it (torch::jit::load, never unpickling, or libtorch's
 * AOTInductor package loader, which runs the package's compiled code); throws an
 * OpenMMException that says what is wrong for a missing, unreadable or non-conforming file.
 */
std::shared_ptr<const TimewarpModel> loadModelFile(const std::string& path);

/** Load a proposal model from the bytes of its file; `source` names it in messages. */
std::shared_ptr<const TimewarpModel> loadModelBytes(const std::string& bytes,
                                                    const std::string& source);

/** The hex SHA-1 digest of `bytes`. */
std::string sha1Hex(const std::string& bytes);

} // namespace TimewarpPlugin

#endif /*OPENMM_TIMEWARP_MODEL_FILE_H_*/
