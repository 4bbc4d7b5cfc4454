#include "TimewarpTestModels.h"
#include <cmath>
#include <filesystem>
#include <torch/csrc/jit/api/module.h>
#include <unistd.h>

using namespace std;

namespace TimewarpPlugin {

void writeProposalModel(const GaussianTestProposal& proposal, const string& path) {
    torch::jit::Module module("GaussianTestProposal");
    module.register_attribute("noise_dim", c10::IntType::get(), 3);
    module.register_attribute("num_atoms", c10::IntType::get(), proposal.numAtoms);
    module.register_attribute("num_atom_types", c10::IntType::get(), 1);
    module.register_attribute("tau", c10::FloatType::get(), proposal.tau);
    module.register_attribute("independent", c10::BoolType::get(), proposal.rho == 0.0);
    module.register_attribute("rho", c10::FloatType::get(), proposal.rho);
    module.register_attribute("spread", c10::FloatType::get(),
                              sqrt(1.0 - proposal.rho * proposal.rho) * proposal.scale);
    module.register_attribute("ratio_factor", c10::FloatType::get(),
                              proposal.ratioSign / (2.0 * proposal.scale * proposal.scale));
    module.define(R"(
def forward(self, positions: Tensor, atom_types: Tensor, noise: Tensor) -> Tuple[Tensor, Tensor]:
    proposals = self.rho * positions.unsqueeze(0) + self.spread * noise
    current = (positions * positions).sum()
    proposed = (proposals * proposals).sum(dim=[1, 2])
    return proposals, self.ratio_factor * (proposed - current)
)");
    module.save(path, {{"timewarp.json", proposal.metadata}});
}

string temporaryPath(const string& name) {
    return (filesystem::temp_directory_path() / (to_string(getpid()) + "-" + name)).string();
}

} // namespace TimewarpPlugin
