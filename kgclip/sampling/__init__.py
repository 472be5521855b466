"""Triplet minibatches, neighbour sampling and entity content loading."""

from kgclip.sampling.content import EntityContent, EntityInputs
from kgclip.sampling.csr import CSR
from kgclip.sampling.neighbor import HeteroNeighborSampler, make_sampler, pyg_lib_available
from kgclip.sampling.triplets import TripletBatch, TripletLoader, TripletSampler

__all__ = ["CSR", "EntityContent", "EntityInputs", "HeteroNeighborSampler", "TripletBatch", "TripletLoader", "TripletSampler", "make_sampler", "pyg_lib_available"]
