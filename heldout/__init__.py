"""heldout: heldout training experiments (Feldman & Zhang 2020; Jiang et al. 2021).

Modules, dependencies flowing one way: `models` (Sonnet networks), `data` (datasets with a
stable `index`), `experiment` (release layout, runs, aux arrays; pure numpy), `checkpoint`
(find and restore, verified), `evaluate` (predictions, cross-check), `estimate` (memorization,
influence, C-scores; pure numpy), `train` (the heldout procedure), `cli`.

Importing the package imports no TensorFlow; the modules that need it import it themselves.
"""

__version__ = "0.1.0"
