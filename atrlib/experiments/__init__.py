"""Experiment helpers the notebooks call: loss ablations, k-fold training, collecting systems
for ensembles. They compose the core (training, metrics, ensembles) and hold no model code."""
