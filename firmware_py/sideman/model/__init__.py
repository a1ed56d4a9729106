"""The models: the event codec every model shares, the Markov tables, the transformer (the network,
its model folders and the backends that run it, its live context) and the plumbing-check echo voice."""
