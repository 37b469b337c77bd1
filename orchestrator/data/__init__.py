"""Target image sets: the data layer of the orchestrator.

- :mod:`.spec`: the target-spec grammar, the held-out rule and seeded draws (``load_target``);
- :mod:`.imageset`: ``ImageSet`` and writing one as a Parquet table;
- :mod:`.datasets`: the ``Dataset`` record, its split, and the built-in datasets;
- :mod:`.readers`: datasets from a folder of images or a Parquet table;
- :mod:`.images`: [-1, 1] tensors to uint8 and PNG grids; :mod:`.glyphs`: the rendered set;
- :mod:`.convert`: a target resized and channel-converted to the source's shape (``--convert-target``).

The names below are the layer's public interface (``from ganlode.orchestrator import data``).
"""

from .datasets import builtin_names, describe_builtins
from .images import from_uint8, grid_png, png_bytes, show_grid, to_uint8
from .imageset import ImageSet, grid_pick, hf_features, import_table, iter_counts, write_parquet
from .readers import clear_caches
from .spec import SPEC_HELP, class_names, eval_reference, load_target

__all__ = [
    "SPEC_HELP", "ImageSet", "builtin_names", "class_names", "clear_caches", "describe_builtins", "eval_reference",
    "from_uint8", "grid_pick", "grid_png", "hf_features", "import_table", "iter_counts", "load_target", "png_bytes", "show_grid", "to_uint8",
    "write_parquet",
]
