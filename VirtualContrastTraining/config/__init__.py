"""Training configuration: the TrainConfig schema and its checks (schema.py), the names of every recipe and
network as data (registries.py), and the catalogue of the papers' presets (presets.py).

Above data (a config names data's windows and is checked with its parsers), below models, which are built
from a TrainConfig.
"""
