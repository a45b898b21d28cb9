"""Data attribution scored against heldout runs: LDS, linear datamodels, influence on outputs.

Models retrained on random subsets are the ground truth of data attribution. From the runs'
subset masks ``M`` bool [R, n_train] and an output per run and evaluated example ``f`` float
[R, n_test] (a predictions store's ``margin`` or ``logit_confidence``; see
`heldout.predict.read_outputs`), this package computes (pure numpy; scipy for p-values,
scikit-learn for the lasso only, imported when used):

- `lds`: the linear datamodeling score of attribution scores ``tau`` [n_train, n_test], per
  test example Spearman's rho over the runs of ``(M tau)[:, j]`` against ``f[:, j]`` (Park et
  al., *TRAK*, ICML 2023, Definition 2.3; dattri 0.3.0's ``dattri.metric.lds``), with p-values,
  and `summarize` (mean and 95% interval over test examples).
- `fit_datamodels`: linear datamodels ``f_j(S) ~ b_j + sum_i w_ij [i in S]`` (Ilyas et al.,
  *Datamodels*, ICML 2022): ridge in the dual form for every test example at once, or
  scikit-learn's lasso per test example, the penalty chosen per test example on held-out runs.
- `output_influence`: the heldout estimator (Feldman & Zhang, NeurIPS 2020) on any output,
  mean with minus mean without, with Welch standard errors; `output_influence_top_k`.
- `cross_fit_baselines`: the library's estimators scored by LDS on held-out runs.

Scores, weights and influences share units and sign: the change of the output when the
training example is included. Files: `heldout.attribution.files` (`load_baselines` reads the
table of `heldout lds --baselines` back).
"""

from heldout.attribution.arrays import DEFAULT_WORKING_BYTES as DEFAULT_WORKING_BYTES
from heldout.attribution.baselines import METHODS as METHODS
from heldout.attribution.baselines import BaselineTable, cross_fit_baselines
from heldout.attribution.datamodels import Datamodels, fit_datamodels, validation_split
from heldout.attribution.files import (
    BaselinesFile,
    DatamodelsFile,
    Scores,
    load_baselines,
    load_datamodels,
    load_scores,
    save_datamodels,
)
from heldout.attribution.influence import (
    OutputInfluence,
    output_influence,
    output_influence_top_k,
)
from heldout.attribution.lds import LDSResult, LDSSummary, lds, summarize
from heldout.attribution.spearman import average_ranks, spearman
from heldout.errors import AttributionError

__all__ = [
    "AttributionError", "BaselineTable", "BaselinesFile", "Datamodels", "DatamodelsFile",
    "LDSResult", "LDSSummary", "OutputInfluence", "Scores", "average_ranks",
    "cross_fit_baselines", "fit_datamodels", "lds", "load_baselines", "load_datamodels",
    "load_scores", "output_influence", "output_influence_top_k", "save_datamodels", "spearman",
    "summarize", "validation_split",
]
