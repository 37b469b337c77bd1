"""The method catalogue as plain data: names, options, defaults and summaries, importable
without torch (the CLI's ``--help`` and Tune's search spaces read it; ``registry`` adds the
builders). One record per method; ``registry`` checks at import that every record has a builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

LOSSES = ("wgan-gp", "ns-r1")
# Settings that follow from the loss: WGAN-GP takes 5 critic steps and Adam betas (0.5, 0.9)
# (Gulrajani et al. 2017); the non-saturating loss with R1 takes 1 and (0.5, 0.99).
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "wgan-gp": {"n_critic": 5, "beta1": 0.5, "beta2": 0.9},
    "ns-r1": {"n_critic": 1, "beta1": 0.5, "beta2": 0.99},
}
L2SP_ON = ("g", "d", "both")
MINE_SPACES = ("z", "w")  # MineGAN's miner outputs z (any architecture) or w (one with a mapping network: stylegan2)
PRETRAIN_ARCHS = ("dcgan", "stylegan2")  # what `ganlode pretrain --arch` trains from scratch
# Multi-source mining's share estimators (ganlode mine --selector; README "Multi-source selector accuracy").
SELECTORS = ("count", "coverage", "mixture-fit")
ROUTING_SELECTORS = ("coverage",)  # the selectors that say which target images each source covers
DEFAULT_SELECTOR = "coverage"
DEFAULT_MIN_SHARE = 0.05  # coverage drops sources whose share is below this
DEFAULT_MIN_GAIN = 1.0  # ...or that gain less than this many nats of log-likelihood per target image they cover

# The defaults of the regularised methods are the settings the transfer benchmark ran
# (benchmarks/transfer_quality.py; README "Transfer quality"): freezed at depth 2 (the
# long-budget run), l2sp at 0.01 and distill at 1.0.
DEFAULT_FREEZE_DEPTH = 2
DEFAULT_L2SP_WEIGHT = 0.01
DEFAULT_DISTILL_WEIGHT = 1.0
# CDC, AdAM and RICK: their papers' code's settings (methods/cdc.py, adam.py, rick.py); the Fisher
# sample counts are smaller (their 1000 and 20 per estimate on a GPU; ours run on CPU too).
DEFAULT_CDC_WEIGHT = 1000.0  # kl_wt
DEFAULT_ADAM_QUANTILE = 50.0  # fisher_quantile
DEFAULT_RICK_QUANTILE = 40.0  # the README's FFHQ -> Babies command
DEFAULT_RICK_PRUNE = 0.1  # prune_quantile (a percentile: 0.1 %)
DEFAULT_FISHER_EVERY = 50  # RICK's fisher_freq
DEFAULT_FISHER_SAMPLES = {"adam": 64, "rick": 20}
DEFAULT_TRANSFER_LR = 1e-4  # transfer moves gently from the source; scratch and latent fits set their own
DEFAULT_BATCH = 64

OPTION_HELP: dict[str, str] = {
    "lr": "learning rate (Adam)",
    "batch": "images per step",
    "loss": f"adversarial loss, one of {', '.join(LOSSES)} (default: the source's)",
    "n_critic": "critic steps per generator step (default: 5 for wgan-gp, 1 for ns-r1)",
    "freeze_depth": "critic blocks frozen, counted from the image side (FreezeD)",
    "l2sp_weight": "weight of the squared distance to the source weights (L2-SP)",
    "l2sp_on": f"which nets L2-SP anchors: {', '.join(L2SP_ON)}",
    "distill_weight": "weight of the critic feature-distillation loss",
    "mining_steps": "MineGAN steps that train the miner alone before joint fine-tuning (default: half the steps)",
    "mine_space": "what MineGAN's miner outputs: z (default), or w between the mapping and synthesis networks "
                  "(stylegan2 only; the mapping network stays frozen)",
    "cdc_weight": "weight of CDC's cross-domain distance consistency (default 1000)",
    "cdc_layers": "generator feature layers CDC compares: all (default) or indices such as 1,2 (0: the latent side)",
    "probe_steps": "AdAM's importance-probing steps before the main adaptation (default: a quarter of the steps)",
    "warmup_steps": "RICK's steps that train only the critic's head first (default: a sixth of the steps)",
    "fisher_every": "steps between RICK's Fisher re-estimates (default 50)",
    "fisher_samples": "samples per empirical-Fisher estimate (default: adam 64, rick 20)",
    "importance_quantile": "percentile (0-100) of filter importance above which AdAM modulates and RICK freezes "
                           "(default: adam 50, rick 40)",
    "prune_quantile": "percentile (0-100) of filter importance at or below which RICK prunes (default 0.1)",
}

_GAN = frozenset({"lr", "batch", "loss", "n_critic"})
_FISHER = frozenset({"fisher_samples", "importance_quantile"})
_FINETUNE = _GAN | {"freeze_depth", "l2sp_weight", "l2sp_on", "distill_weight"}


@dataclass(frozen=True)
class MethodRecord:
    name: str
    family: str  # "adversarial" (G and D trained against each other) or "latent" (codes fitted by reconstruction)
    accepts: frozenset[str]
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)  # method-specific, over the common defaults
    needs_critic: bool = False
    reference: str = ""

    @property
    def adversarial(self) -> bool:
        return self.family == "adversarial"

    @property
    def latent(self) -> bool:
        return self.family == "latent"


RECORDS: tuple[MethodRecord, ...] = (
    MethodRecord("scratch", "adversarial", _GAN,
                 "a fresh GAN of the source's architecture, trained on the target alone (the floor)",
                 defaults={"lr": 2e-4}),
    MethodRecord("finetune", "adversarial", _FINETUNE,
                 "TransferGAN: all of G and D from the source; combines freeze depth, L2-SP and distillation",
                 needs_critic=True, reference="Wang et al. 2018"),
    MethodRecord("freezed", "adversarial", _GAN | {"freeze_depth"},
                 "FreezeD: fine-tuning with the lowest critic blocks frozen",
                 defaults={"freeze_depth": DEFAULT_FREEZE_DEPTH}, needs_critic=True, reference="Mo et al. 2020"),
    MethodRecord("l2sp", "adversarial", _GAN | {"l2sp_weight", "l2sp_on"},
                 "L2-SP: fine-tuning plus weight * squared distance to the source weights",
                 defaults={"l2sp_weight": DEFAULT_L2SP_WEIGHT}, needs_critic=True, reference="Li et al. 2018"),
    MethodRecord("distill", "adversarial", _GAN | {"distill_weight"},
                 "fine-tuning plus a loss keeping the critic's block features close to the source critic's",
                 defaults={"distill_weight": DEFAULT_DISTILL_WEIGHT}, needs_critic=True, reference="Mo et al. 2020"),
    MethodRecord("adabn", "latent", frozenset({"lr"}),
                 "AdaBN: BatchNorm statistics re-estimated on target codes; no weight changes",
                 defaults={"lr": 1e-2}, reference="Li et al. 2016"),
    MethodRecord("bsa", "latent", frozenset({"lr", "batch"}),
                 "BSA: only normalisation scale/shift (and an output scale/shift) and one code per image",
                 defaults={"lr": 1e-2}, reference="Noguchi & Harada 2019"),
    MethodRecord("glo", "latent", frozenset({"lr", "batch"}),
                 "GLO: G and one code per target image, by reconstruction", defaults={"lr": 1e-3},
                 reference="Bojanowski et al. 2018"),
    MethodRecord("minegan", "adversarial", _GAN | {"mining_steps", "mine_space"},
                 "MineGAN: a miner u -> z before the frozen G, then G and miner fine-tuned", needs_critic=True,
                 reference="Wang et al. 2020"),
    MethodRecord("cdc", "adversarial", _GAN | {"cdc_weight", "cdc_layers"},
                 "CDC: fine-tuning that keeps each sample's feature similarities to the others as the source's, "
                 "with a patch-level critic away from anchor latents",
                 defaults={"cdc_weight": DEFAULT_CDC_WEIGHT}, needs_critic=True, reference="Ojha et al. 2021"),
    MethodRecord("adam", "adversarial", _GAN | _FISHER | {"probe_steps"},
                 "AdAM: Fisher-probed important kernels modulated (their weights frozen), the others fine-tuned",
                 defaults={"importance_quantile": DEFAULT_ADAM_QUANTILE, "fisher_samples": DEFAULT_FISHER_SAMPLES["adam"]},
                 needs_critic=True, reference="Zhao et al. 2022"),
    MethodRecord("rick", "adversarial", _GAN | _FISHER | {"warmup_steps", "fisher_every", "prune_quantile"},
                 "RICK: fine-tuning whose filters are frozen or pruned by their Fisher importance, re-estimated as it goes",
                 defaults={"importance_quantile": DEFAULT_RICK_QUANTILE, "fisher_samples": DEFAULT_FISHER_SAMPLES["rick"]},
                 needs_critic=True, reference="Zhao et al. 2023"),
)
BY_NAME: dict[str, MethodRecord] = {r.name: r for r in RECORDS}
METHODS: tuple[str, ...] = tuple(BY_NAME)
ADVERSARIAL: tuple[str, ...] = tuple(r.name for r in RECORDS if r.adversarial)
LATENT: tuple[str, ...] = tuple(r.name for r in RECORDS if r.latent)
NEEDS_CRITIC: tuple[str, ...] = tuple(r.name for r in RECORDS if r.needs_critic)
ACCEPTS: dict[str, frozenset[str]] = {r.name: r.accepts for r in RECORDS}


def record(method: str) -> MethodRecord:
    """The record of ``method``; ValueError naming the known methods otherwise."""
    try:
        return BY_NAME[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}") from None


def defaults(method: str, *, loss: str, steps: int, critic_blocks: int | None) -> dict[str, Any]:
    """Every option's default for ``method`` (only the ones it accepts)."""
    r = record(method)
    common: dict[str, Any] = {
        "lr": DEFAULT_TRANSFER_LR, "batch": DEFAULT_BATCH, "loss": loss,
        "n_critic": LOSS_DEFAULTS[loss]["n_critic"], "freeze_depth": 0, "l2sp_weight": 0.0,
        "l2sp_on": "both", "distill_weight": 0.0, "mining_steps": steps // 2,
        "mine_space": "z", "cdc_weight": DEFAULT_CDC_WEIGHT, "cdc_layers": "all", "probe_steps": steps // 4,
        "warmup_steps": steps // 6, "fisher_every": DEFAULT_FISHER_EVERY, "fisher_samples": 32,
        "importance_quantile": 50.0, "prune_quantile": DEFAULT_RICK_PRUNE,
    }
    common.update(r.defaults)
    if "freeze_depth" in r.defaults and critic_blocks is not None:
        common["freeze_depth"] = min(common["freeze_depth"], critic_blocks)
    return {k: v for k, v in common.items() if k in r.accepts}


def source_critic_use(options: Mapping[str, Any]) -> str | None:
    """The (resolved) option that reads the source critic's *trained* weights, beyond starting from them:
    FreezeD's frozen blocks, distillation's target features, L2-SP's anchor on D; None when none does.

    A source whose critic starts from scratch (an import without a critic) serves the methods that
    only train it (finetune, minegan) and refuses these.
    """
    if (options.get("freeze_depth") or 0) > 0:
        return "freeze_depth"
    if (options.get("distill_weight") or 0) > 0:
        return "distill_weight"
    if (options.get("l2sp_weight") or 0) > 0 and options.get("l2sp_on") in ("d", "both", None):
        return "l2sp_on"
    return None


def defaults_text(method: str) -> str:
    """The method's own defaults, for help texts: ``freeze_depth=2, lr=0.0001``."""
    r = record(method)
    shown = {"lr": DEFAULT_TRANSFER_LR, **r.defaults} if "lr" in r.accepts else dict(r.defaults)
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(shown.items()))
