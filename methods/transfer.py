"""The first version's single module of the method interface, kept as names only.

New code imports from :mod:`~ganlode.methods.base` (the interface), :mod:`~ganlode.methods.options`
and :mod:`~ganlode.methods.registry`; this module imports nothing else and defines nothing.
"""

from .base import Adapter, Export, FeatureFn, NotApplicable, OptionError, Source, TransferOptions
from .catalog import DEFAULT_TRANSFER_LR, L2SP_ON
from .options import check as check_options
from .options import resolve as resolve_options
from .registry import ACCEPTS, ADVERSARIAL, LATENT, METHODS, NEEDS_CRITIC, build
from .seeding import seeded_init

REQUIRES: dict[str, frozenset[str]] = {}  # every option has a default now (registry.MethodSpec.defaults)

__all__ = ["L2SP_ON", "Adapter", "Export", "FeatureFn", "NotApplicable", "OptionError", "Source", "TransferOptions",
           "DEFAULT_TRANSFER_LR", "check_options", "resolve_options", "ACCEPTS", "ADVERSARIAL", "LATENT", "METHODS",
           "NEEDS_CRITIC", "build", "seeded_init", "REQUIRES"]
