"""Energy-based fine-tuning of a proposal model trained by maximum likelihood.

Maximum likelihood (:mod:`openmm_timewarp.training.likelihood`) fits the model to MD frames
without looking at the energy. Fine-tuning adds an objective that does, with energies and forces
from OpenMM through :class:`openmm_timewarp.data.energy.ReducedPotential` (``u = U / kT``), and
keeps the maximum-likelihood loss on the data beside it with a weight, so the model keeps covering
every basin of the data:

    loss = (1 - w) * NLL(data) + w * objective

Objectives:

- ``"acceptance"`` (Timewarp's, for every family): ``x`` drawn from the training frames (equilibrium
  samples), ``x'`` from the model's contract ``forward(x, atom_types, noise)`` in eager mode,
  differentiable through the reparametrised noise, and

      objective = -E[min(0, -(u(x') - u(x)) + logQRatio)],

  the negative expected log Metropolis-Hastings acceptance;
- ``"reverse-kl"`` (independence proposals, ``ic-independent``): ``x ~ q`` and

      objective = E_q[u(x) + log q_cart(x)],  log q_cart = log q(i) - log J(i),

  the reverse Kullback-Leibler divergence to the Boltzmann density up to its constant, with the
  internal-to-Cartesian log-Jacobian ``log J`` included.

A few proposals put atoms on top of each other, with energies of 10^5-10^7 kT: in a plain mean they
would own the whole gradient. Both objectives therefore pass the energy excess through a lin-log
cut (as bgflow does for Boltzmann generators): linear up to ``energy_cut`` kT, logarithmic beyond
(the rejection ``-log alpha`` for the acceptance objective; ``u`` relative to the mean energy of the
step's data frames for the reverse KL). The log acceptance itself is what is cut, so the objective
is unchanged wherever a proposal has a chance of acceptance.

:func:`fine_tune` runs the resumable loop of :mod:`openmm_timewarp.training.loop` (Adam with
warm-up and gradient clipping) on :class:`FineTuneObjective`: it evaluates the validation NLL and
the mean acceptance probability on a fixed set of validation frames and proposal noise every
``validate_every`` steps (the first row, step 0, is the starting model), keeps the parameters with
the highest validation acceptance, writes ``log.csv`` and a checkpoint every ``checkpoint_every``
steps, and resumes exactly from it. Configurations whose energy is not finite are masked out of the
loss and counted; a step whose gradient is not finite is skipped and counted.

``timewarp train ... --fine-tune-steps N`` runs it after maximum likelihood
(:func:`openmm_timewarp.training.pipeline.fine_tune_folder`).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from openmm_timewarp.data.energy import ReducedPotential
from openmm_timewarp.proposals.ic.families import (
    ICIndependentProposal,
    keeping_relabelled_proposals,
)
from openmm_timewarp.training.distributed import ProcessGroup
from openmm_timewarp.training.likelihood import validation_nll
from openmm_timewarp.training.loop import (
    Evaluation,
    Schedule,
    Status,
    optimise,
)

OBJECTIVES = ("acceptance", "reverse-kl")
LOG_COLUMNS = (
    "step",
    "loss",
    "objective",
    "train_nll",
    "acceptance",
    "validation_nll",
    "validation_acceptance",
    "validation_median_log_acceptance",
    "nonfinite_energies",
    "skipped_steps",
    "learning_rate",
    "grad_norm",
    "seconds",
)
#: The panels of the fine-tune's loss plot: (axis label, log columns).
LOSS_PANELS = (
    ("loss", ("loss",)),
    ("NLL", ("train_nll", "validation_nll")),
    ("acceptance", ("acceptance", "validation_acceptance")),
)

#: Help of each setting, used by the ``timewarp train --fine-tune-*`` options.
SETTING_HELP = {
    "steps": "fine-tune steps after maximum likelihood (0: no fine-tune)",
    "objective": "energy objective: acceptance (every family) or reverse-kl (ic-independent)",
    "weight": "weight w of the energy objective; maximum likelihood on the data gets 1 - w "
    "(0: maximum likelihood alone with these settings, the objective only logged: a control)",
    "learning_rate": "Adam's learning rate after the warm-up",
    "warmup_steps": "steps of linear learning-rate warm-up",
    "max_grad_norm": "gradient-norm clipping",
    "energy_cut": "excess in kT beyond which the energy objective grows only logarithmically",
    "batch_size": "data pairs of the maximum-likelihood term per step",
    "num_starts": "training frames x per step (the reverse KL takes their external frames)",
    "proposals_per_start": "proposals x' drawn per frame x (reverse KL: samples per frame)",
    "validate_every": "steps between validations (one log.csv row each)",
    "checkpoint_every": "steps between checkpoints (a multiple of the validation interval)",
    "validation_starts": "validation frames of the acceptance estimate (fixed, as is the noise)",
    "seed": "seed of the batches and the proposal noise",
}


@dataclass(frozen=True)
class FineTuneSettings:
    """Fine-tune settings; stored in every checkpoint and checked on resume."""

    steps: int = 500
    objective: str = "acceptance"
    weight: float = 0.1
    learning_rate: float = 1e-4
    warmup_steps: int = 20
    max_grad_norm: float = 10.0
    energy_cut: float = 20.0
    batch_size: int = 256
    num_starts: int = 16
    proposals_per_start: int = 16
    validate_every: int = 25
    checkpoint_every: int = 50
    validation_starts: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must lie in [0, 1], got {self.weight}")
        for name in (
            "steps",
            "batch_size",
            "num_starts",
            "proposals_per_start",
            "validate_every",
            "checkpoint_every",
            "validation_starts",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        positive = ("learning_rate", "max_grad_norm", "energy_cut")
        if not all(getattr(self, name) > 0 for name in positive) or self.warmup_steps < 0:
            raise ValueError(f"{', '.join(positive)} must be positive, warmup_steps >= 0")
        if self.checkpoint_every % self.validate_every:
            raise ValueError("checkpoint_every must be a multiple of validate_every")


def settings_for_family(family: str, **values) -> FineTuneSettings:
    """:class:`FineTuneSettings` from ``values``, refused if they do not fit the model family."""
    settings = FineTuneSettings(**values)
    if family == "ic-mixture":
        raise ValueError("fine-tune the components in their own folders, not the mixture")
    if settings.objective == "reverse-kl" and family != "ic-independent":
        raise ValueError(
            f"the reverse-kl objective is for ic-independent models, not {family}: "
            "use --fine-tune-objective acceptance"
        )
    return settings


@dataclass(frozen=True)
class FineTuneResult:
    steps: int
    best_step: int  # 0 when no step improved the starting model's validation acceptance
    initial_validation_acceptance: float
    best_validation_acceptance: float
    best_validation_nll: float  # the validation NLL of the best model
    nonfinite_energies: int
    skipped_steps: int
    seconds: float  # wall time, summed over resumed runs
    cpu_seconds: float  # CPU time of this process, summed over resumed runs
    log_path: Path
    best_model_path: Path


def log_acceptance(
    proposal: torch.nn.Module,
    potential: ReducedPotential,
    starts: torch.Tensor,
    start_energies: torch.Tensor,
    atom_types: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """``min(0, -(u(x') - u(x)) + logQRatio)`` ``[K, M]`` of M proposals from each of K starts.

    ``proposal`` meets the contract (``forward(positions, atom_types, noise)``); ``starts``
    ``[K, N, 3]`` with their reduced energies ``[K]``; ``noise`` ``[K, M, N, noise_dim]``.
    Differentiable with respect to the model's parameters; non-finite entries stay non-finite.
    """
    proposals, log_ratios = [], []
    for start, start_noise in zip(starts, noise, strict=True):
        x_new, log_ratio = proposal(start, atom_types, start_noise)
        proposals.append(x_new)
        log_ratios.append(log_ratio)
    x_new = torch.stack(proposals)
    energies = potential(x_new.reshape(-1, *x_new.shape[2:])).reshape(x_new.shape[:2])
    log_alpha = torch.stack(log_ratios) - (energies - start_energies[:, None])
    return log_alpha.clamp(max=0.0)


def lin_log_cut(values: torch.Tensor, cut: float) -> torch.Tensor:
    """``v`` up to ``cut``, ``cut + log(1 + v - cut)`` beyond: continuous, with a bounded slope."""
    excess = (values - cut).clamp_min(0.0)  # the clamp keeps log1p's gradient finite below cut
    return torch.where(values > cut, cut + torch.log1p(excess), values)


def masked_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of the finite entries (0 if there is none), without gradients from the others."""
    finite = torch.isfinite(values)
    return torch.where(finite, values, 0.0).sum() / finite.sum().clamp_min(1)


def reverse_kl(
    model: torch.nn.Module,
    potential: ReducedPotential,
    frames: torch.Tensor,
    atom_types: torch.Tensor,
    noise: torch.Tensor,
    reference_energy: float = 0.0,
    energy_cut: float = math.inf,
) -> torch.Tensor:
    """``cut(u(x) - reference_energy) + log q_cart(x)`` ``[B]`` of samples ``x ~ q`` of an
    independence proposal on internal coordinates, drawn from base noise ``[B, num_internal]``
    and placed in the external frames of ``frames`` ``[B, N, 3]`` (the energy does not depend on
    them); ``cut`` is :func:`lin_log_cut` at ``energy_cut``."""
    if not isinstance(model, ICIndependentProposal):
        raise ValueError("the reverse-kl objective is for ic-independent models; use acceptance")
    uniforms = 0.5 * (1.0 + torch.erf(noise / math.sqrt(2.0)))
    q, log_q = model.sample(uniforms)
    _, origin, rotation = model.internal(frames, atom_types)
    x = model.cartesian(q, origin, rotation, atom_types, frames.dtype)
    log_q_cartesian = log_q - model.transform.log_det_jacobian(q)
    return lin_log_cut(potential(x) - reference_energy, energy_cut) + log_q_cartesian


class FineTuneObjective:
    """``(1 - w) * NLL(data) + w * objective`` (module docstring); judged by the mean acceptance
    probability on fixed validation frames and noise (higher is better)."""

    log_columns = LOG_COLUMNS
    evaluates_start = True
    skips_nonfinite_steps = True

    def __init__(
        self,
        model: torch.nn.Module,
        proposal: torch.nn.Module,
        potential: ReducedPotential,
        train_pairs: tuple[torch.Tensor, torch.Tensor],
        validation_pairs: tuple[torch.Tensor, torch.Tensor],
        atom_types: torch.Tensor,
        settings: FineTuneSettings,
    ) -> None:
        self.model, self.proposal, self.potential = model, proposal, potential
        self.train_pairs, self.validation_pairs = train_pairs, validation_pairs
        self.atom_types, self.settings = atom_types, settings
        # Fixed validation frames and noise: the acceptance estimate compares models, not draws.
        fixed = torch.Generator().manual_seed(settings.seed + 1)
        count = min(settings.validation_starts, len(validation_pairs[0]))
        order = torch.randperm(len(validation_pairs[0]), generator=fixed)
        self.validation_starts = validation_pairs[0][order[:count]]
        num_atoms = train_pairs[0].shape[1]
        self.noise_shape = (settings.proposals_per_start, num_atoms, proposal.noise_dim)
        self.validation_noise = torch.randn(count, *self.noise_shape, generator=fixed)
        with torch.no_grad():
            self.validation_energies = potential(self.validation_starts)
        if not bool(torch.isfinite(self.validation_energies).all()):
            raise ValueError("a validation frame has a non-finite energy: the System does not fit")
        self.best_acceptance, self.initial_acceptance, self.best_nll = -math.inf, math.nan, math.nan

    def start(
        self, model: torch.nn.Module, device: torch.device, group: ProcessGroup | None
    ) -> None:
        if group is not None:
            raise ValueError("the fine-tune runs in one process")

    def _validate(self) -> tuple[float, float, float]:
        """Mean acceptance probability, median log acceptance, validation NLL."""
        self.model.eval()
        with torch.no_grad():
            log_alpha = log_acceptance(
                self.proposal,
                self.potential,
                self.validation_starts,
                self.validation_energies,
                self.atom_types,
                self.validation_noise,
            )
        self.model.train()
        # A non-finite proposal is rejected by the integrator: acceptance 0, log acceptance -inf.
        log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)
        acceptance = float(log_alpha.exp().mean())
        nll = validation_nll(self.model, self.validation_pairs, self.atom_types)
        return acceptance, float(log_alpha.median()), nll

    def loss(self, step: int, draws: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        settings, model, potential = self.settings, self.model, self.potential
        num_pairs = len(self.train_pairs[0])
        index = torch.randint(num_pairs, (settings.batch_size,), generator=draws)
        nll = model.training_nll(
            self.train_pairs[0][index], self.train_pairs[1][index], self.atom_types
        ).mean()
        start_index = torch.randint(num_pairs, (settings.num_starts,), generator=draws)
        starts = self.train_pairs[0][start_index]
        values = {}
        if settings.objective == "acceptance":
            noise = torch.randn(settings.num_starts, *self.noise_shape, generator=draws)
            with torch.no_grad():
                start_energies = potential(starts)
            # Proposals that label equivalent atoms with another handedness than their start
            # keep the flow's ratio for the gradient; validation counts them as rejected.
            with keeping_relabelled_proposals(self.proposal):
                log_alpha = log_acceptance(
                    self.proposal, potential, starts, start_energies, self.atom_types, noise
                )
            objective = masked_mean(lin_log_cut(-log_alpha, settings.energy_cut))
            accepted = torch.nan_to_num(log_alpha.detach(), nan=-math.inf).exp()
            values["acceptance"] = float(accepted.mean())
        else:
            num_samples = settings.num_starts * settings.proposals_per_start
            noise = torch.randn(num_samples, model.num_internal, generator=draws)
            frames = starts.repeat_interleave(settings.proposals_per_start, 0)
            with torch.no_grad():
                reference = float(potential(starts).mean())
            terms = reverse_kl(
                model, potential, frames, self.atom_types, noise, reference, settings.energy_cut
            )
            objective = masked_mean(terms)
        loss = (1.0 - settings.weight) * nll + settings.weight * objective
        values |= {
            "loss": float(loss.detach()),
            "objective": float(objective.detach()),
            "nll": float(nll.detach()),
        }
        return loss, values

    def evaluate(self, status: Status) -> Evaluation:
        acceptance, median_log_acceptance, nll = self._validate()
        if status.step == 0:
            self.initial_acceptance = acceptance
        improved = acceptance > self.best_acceptance
        if improved:
            self.best_acceptance, self.best_nll = acceptance, nll
        means = status.means
        row = {
            "step": str(status.step),
            "loss": means.get("loss", ""),
            "objective": means.get("objective", ""),
            "train_nll": means.get("nll", ""),
            "acceptance": means.get("acceptance", ""),
            "validation_nll": f"{nll:.6g}",
            "validation_acceptance": f"{acceptance:.6g}",
            "validation_median_log_acceptance": f"{median_log_acceptance:.6g}",
            "nonfinite_energies": str(self.potential.num_nonfinite),
            "skipped_steps": str(status.skipped),
            "learning_rate": f"{status.learning_rate:.6g}",
            "grad_norm": f"{status.grad_norm:.6g}",
            "seconds": f"{status.seconds:.2f}",
        }
        return Evaluation(improved, row, {"acceptance": row["validation_acceptance"]})

    def should_stop(self) -> bool:
        return False

    def state(self) -> dict:
        return {
            "best_acceptance": self.best_acceptance,
            "best_nll": self.best_nll,
            "initial_acceptance": self.initial_acceptance,
            "nonfinite_energies": self.potential.num_nonfinite,
        }

    def load_state(self, state: dict) -> None:
        self.best_acceptance, self.best_nll = state["best_acceptance"], state["best_nll"]
        self.initial_acceptance = state["initial_acceptance"]
        self.potential.num_nonfinite = state["nonfinite_energies"]


def fine_tune(
    model: torch.nn.Module,
    potential: ReducedPotential,
    train_pairs: tuple[torch.Tensor, torch.Tensor],
    validation_pairs: tuple[torch.Tensor, torch.Tensor],
    atom_types: torch.Tensor,
    output_dir: str | os.PathLike,
    settings: FineTuneSettings | None = None,
    proposal: torch.nn.Module | None = None,
    progress: bool = True,
) -> FineTuneResult:
    """Fine-tune ``model`` in place; leaves it holding the best validation-acceptance parameters.

    Args:
        model: trained by maximum likelihood; has ``training_nll(x_cond, x_next, atom_types)``.
        potential: the reduced potential of the data's System, at the data's temperature.
        train_pairs, validation_pairs: ``(x_cond, x_next)`` float32 ``[B, N, 3]`` nm, split by time
            (for an independent model ``(frames, frames)``); the acceptance objective starts
            from ``x_cond``, equilibrium frames.
        atom_types: the model's type code of every atom ``[N]``.
        output_dir: gets ``checkpoint.pt``, ``best_model.pt`` and ``log.csv``; an existing
            checkpoint there is resumed (it must come from the same settings).
        settings: fine-tune settings (defaults: :class:`FineTuneSettings`).
        proposal: the module with the contract's ``forward`` whose parameters ``model`` trains
            (default ``model`` itself; a Timewarp flow's training wrapper passes the flow).
        progress: show progress (a bar on a terminal, else log lines).
    """
    settings = settings or FineTuneSettings()
    proposal = model if proposal is None else proposal
    num_atoms = train_pairs[0].shape[1]
    if potential.num_atoms != num_atoms:
        raise ValueError(
            f"the System has {potential.num_atoms} particles but the data have {num_atoms} atoms: "
            "build the System from the data's topology"
        )
    if not callable(getattr(model, "training_nll", None)):
        raise ValueError("the model needs a method training_nll(x_cond, x_next, atom_types)")
    if settings.objective == "reverse-kl" and not isinstance(model, ICIndependentProposal):
        raise ValueError("the reverse-kl objective is for ic-independent models; use acceptance")
    objective = FineTuneObjective(
        model, proposal, potential, train_pairs, validation_pairs, atom_types, settings
    )
    result = optimise(
        model,
        objective,
        Schedule.of(settings, settings.steps),
        asdict(settings),
        Path(output_dir),
        progress,
        description="fine-tune",
    )
    return FineTuneResult(
        steps=result.steps,
        best_step=result.best_step,
        initial_validation_acceptance=objective.initial_acceptance,
        best_validation_acceptance=objective.best_acceptance,
        best_validation_nll=objective.best_nll,
        nonfinite_energies=potential.num_nonfinite,
        skipped_steps=result.skipped,
        seconds=result.seconds,
        cpu_seconds=result.cpu_seconds,
        log_path=result.log_path,
        best_model_path=result.best_model_path,
    )
