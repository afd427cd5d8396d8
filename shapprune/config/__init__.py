"""``params.yaml`` schema, validated once at the edge; one section per pipeline stage.

The sections live by concept (:mod:`.model`, :mod:`.estimation`, :mod:`.selection`, :mod:`.evaluation`);
:mod:`.params` joins them and loads the file. Everything is importable from here.
"""

from shapprune.config.estimation import EstimateShapley, FitSurrogate, SampleMasks, ScoreMasks
from shapprune.config.evaluation import Compare, Evaluate, Export, Report
from shapprune.config.model import Base, PrepareData, PrepareModel
from shapprune.config.params import Params, load_params, parse_params
from shapprune.config.section import ConfigError
from shapprune.config.selection import Prune, Repair, ScoreLayers, Select

__all__ = [
    "Base",
    "Compare",
    "ConfigError",
    "EstimateShapley",
    "Evaluate",
    "Export",
    "FitSurrogate",
    "Params",
    "PrepareData",
    "PrepareModel",
    "Prune",
    "Repair",
    "Report",
    "SampleMasks",
    "ScoreLayers",
    "ScoreMasks",
    "Select",
    "load_params",
    "parse_params",
]
