"""NIR import and export (Neuromorphic Intermediate Representation; Pedersen et al.,
Nat. Commun. 2024; docs/references.md#nir).

``from_nir(graph_or_path, dt=None, convention="euler")`` builds a time-major spikecim module
from a NIR graph; ``to_nir(model, dt=1e-4)`` writes a spikecim model as a NIR graph;
``load_model(path)`` accepts a ``.nir`` file wherever a model is expected.
"""

from spikecim.interop.discretise import CONVENTIONS, discretise
from spikecim.interop.importer import DEFAULT_DT, from_nir
from spikecim.interop.nirfile import read_graph, write_graph

__all__ = [
    "CONVENTIONS",
    "DEFAULT_DT",
    "discretise",
    "from_nir",
    "load_model",
    "read_graph",
    "to_nir",
    "write_graph",
]


def __getattr__(name):  # lazy: the exporter and loader import the model registry
    if name == "to_nir":
        from spikecim.interop.exporter import to_nir

        return to_nir
    if name == "load_model":
        from spikecim.interop.loader import load_model

        return load_model
    raise AttributeError(name)
