"""Data parallelism: one training run on several processes, as the paper's
synchronous gradient descent on many GPUs.

``torchrun`` starts one copy of the training command per device and tells
each its place through the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``)::

    torchrun --nproc_per_node N -m xception_common.train --framework torch ...

Every process holds the whole model and reads the same epoch plan
(``epoch_plan``); at each step it takes its share of the batch (``share``),
and ``DistributedDataParallel`` averages the gradients over the processes
before the optimizer steps, so every process keeps the same weights.

The rule for batch and learning rate: ``--batch-size`` is the global batch,
split evenly over the processes (``per_replica_batch``), and the learning
rate is the recipe's for that global batch. N processes therefore take the
steps one process would take on the same batches, except that

* each process normalises its BatchNorm layers over its share of the batch,
  unless ``--sync-batch-norm`` (PyTorch's ``SyncBatchNorm``, on GPUs only)
  normalises over the whole batch;
* each process draws its dropout masks from a generator of its own
  (``replica_seed``).

Only the first process (rank 0) writes the run's folder, which every process
reads on ``--resume``.
"""

import os
from dataclasses import dataclass

import numpy as np

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for each process


@dataclass(frozen=True)
class Place:
    """A process's place in a run: its rank among ``world_size`` processes,
    and its rank on its own machine (the GPU it takes)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's folder: the first one does."""
        return self.rank == 0


def place(environ=os.environ) -> Place:
    """This process's place, from torchrun's environment; one process of one
    when it was not started by torchrun. Raises ValueError for values that
    are not whole numbers or do not fit together."""
    if "WORLD_SIZE" not in environ:
        return Place()
    try:
        rank, world_size, local_rank = (int(environ.get(name, 0)) for name in ENVIRONMENT)
    except ValueError as error:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers, got "
                         f"{', '.join(f'{name}={environ.get(name)!r}' for name in ENVIRONMENT)}") from error
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE) and LOCAL_RANK >= 0, got RANK={rank}, "
                         f"WORLD_SIZE={world_size}, LOCAL_RANK={local_rank}")
    return Place(rank, world_size, local_rank)


def per_replica_batch(batch_size: int, replicas: int) -> int:
    """Each replica's share of the global batch; ValueError unless the
    replicas share it evenly."""
    if batch_size % replicas:
        raise ValueError(f"the global batch size {batch_size} does not split evenly over {replicas} replicas; "
                         f"use a multiple of {replicas}")
    return batch_size // replicas


def share(columns: np.ndarray, replica: int, replicas: int) -> np.ndarray:
    """Replica ``replica``'s columns of a (steps, global batch) array of an
    epoch plan: the replica-th of ``replicas`` equal slices of every batch."""
    size = per_replica_batch(columns.shape[1], replicas)
    return columns[:, replica * size : (replica + 1) * size]


def replica_seed(seed: int, replica: int) -> int:
    """The seed of replica ``replica``'s dropout masks in a run of ``seed``,
    drawn from both, so that no two replicas share masks."""
    return int(np.random.SeedSequence([seed, replica]).generate_state(1)[0])


def place_for(replicas: int, environ=os.environ) -> Place:
    """This process's place in a PyTorch run configured for ``replicas``, one
    process each; ValueError when torchrun started another number of them."""
    found = place(environ)
    if found.world_size != replicas:
        raise ValueError(f"the run is configured for {replicas} replica(s), one process each, but this process is "
                         f"one of {found.world_size} (torchrun's WORLD_SIZE); the two must be equal")
    return found
