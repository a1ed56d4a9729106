"""sideman-train: the off-device pipeline (corpus, Markov tables, later the transformer)."""
