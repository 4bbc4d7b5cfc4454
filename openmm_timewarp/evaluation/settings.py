"""What the side-by-side benchmark runs: the samplers, the MD baselines and the settings.

- ``timewarp``: TimewarpIntegrator, Metropolis-Hastings (exact);
- ``timewarp-exploration``: TimewarpIntegrator in exploration mode (energy threshold, not exact);
- ``md-0.5fs``: LangevinMiddleIntegrator 0.5 fs, no constraints (the training-data protocol);
- ``md-2fs-hbonds``: LangevinMiddleIntegrator 2 fs with bonds to hydrogen constrained (what a user
  would run);
- ``md-4fs-hmr``: LangevinMiddleIntegrator 4 fs, bonds to hydrogen constrained and hydrogen mass
  repartitioning to 4 amu (what a user after speed would run; 4 amu with 4 fs is the OpenMM user
  guide's pairing).
"""

from __future__ import annotations

from dataclasses import dataclass

TIMEWARP = "timewarp"
EXPLORATION = "timewarp-exploration"
MD_DATA_PROTOCOL = "md-0.5fs"
MD_PRACTICAL = "md-2fs-hbonds"
MD_HMR = "md-4fs-hmr"
SAMPLERS = (TIMEWARP, EXPLORATION, MD_DATA_PROTOCOL, MD_PRACTICAL, MD_HMR)
MD_FRICTION_PER_PS = 0.3
#: The usual repartitioned hydrogen mass for a 4 fs step (OpenMM user guide, ``hydrogenMass``).
HMR_HYDROGEN_MASS_AMU = 4.0


@dataclass(frozen=True)
class MDProtocol:
    """One MD baseline: LangevinMiddleIntegrator at ``MD_FRICTION_PER_PS`` and the benchmark's
    temperature."""

    timestep_fs: float
    hbond_constraints: bool
    #: Repartitioned hydrogen mass (amu); None keeps the force field's masses.
    hydrogen_mass_amu: float | None = None


MD_PROTOCOLS = {
    MD_DATA_PROTOCOL: MDProtocol(0.5, hbond_constraints=False),
    MD_PRACTICAL: MDProtocol(2.0, hbond_constraints=True),
    MD_HMR: MDProtocol(4.0, hbond_constraints=True, hydrogen_mass_amu=HMR_HYDROGEN_MASS_AMU),
}


@dataclass
class BenchmarkSettings:
    """What the benchmark runs and how it analyses; the defaults are the documented protocol."""

    budget_s: float = 60.0
    samplers: tuple[str, ...] = SAMPLERS
    temperature_K: float = 310.0
    platform: str = "Reference"
    num_starts: int = 1
    timewarp_frame_interval: int = 10
    md_frame_interval_ps: float = 0.1
    max_frames: int = 100_000
    #: None: the integrator's default (a large batch for independence models, else adaptive).
    max_proposal_batch: int | None = None
    exploration_threshold_kj_mol: float = 300.0
    reference_ns: float = 10.0
    reference_frame_interval_ps: float = 1.0
    reference_equilibration_ps: float = 20.0
    tica_lag_ps: float = 10.0
    min_state_population: float = 0.001
    num_kmeans_states: int = 6
    seed: int = 1
    #: Threads of torch's (and so the plugin's libtorch's) intra-op pool. One, like the single-
    #: threaded Reference platform, keeps the comparison on equal hardware; more threads than free
    #: cores make model calls many times slower on a busy machine.
    torch_threads: int = 1
    #: Run a transferable model's proposal compiled (``TimewarpIntegrator(compiled=True)``); the
    #: compile happens once per molecule, before any timed window.
    compiled: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.samplers) - set(SAMPLERS)
        if unknown or not self.samplers:
            raise ValueError(f"unknown samplers {sorted(unknown)}; choose from {SAMPLERS}")
        positive = ("budget_s", "md_frame_interval_ps", "reference_ns", "tica_lag_ps")
        for name in positive + (
            "reference_frame_interval_ps",
            "temperature_K",
            "exploration_threshold_kj_mol",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        integers = ("num_starts", "timewarp_frame_interval", "max_proposal_batch", "seed")
        for name in integers + ("torch_threads",):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_frames < 4:
            raise ValueError(f"max_frames must be at least 4, got {self.max_frames}")
