"""Data parallelism: one training run on several replicas of the model, as
the paper's synchronous gradient descent on many GPUs.

Keras runs its replicas in one process, one per device, through
``tf.distribute.MirroredStrategy`` (``--replicas N``); PyTorch runs one
process per replica. For PyTorch, ``torchrun`` starts one copy of the training command per device and tells
each its place through the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``)::

    torchrun --nproc_per_node N -m xception_common.train --framework torch ...

Every replica holds the whole model and reads the same epoch plan
(``epoch_plan``); at each step it takes its share of the batch (``share``;
Keras splits each batch of its ``tf.data`` pipeline the same way), and
``DistributedDataParallel`` or the strategy averages the gradients over the
replicas before the optimizer steps, so that every replica keeps the same
weights.

The rule for batch and learning rate: ``--batch-size`` is the global batch,
split evenly over the replicas (``per_replica_batch``), and the learning
rate is the recipe's for that global batch. N replicas therefore take the
steps one would take on the same batches, except that

* each replica normalises its BatchNorm layers over its share of the batch,
  unless ``--sync-batch-norm`` normalises over the whole batch (PyTorch's
  ``SyncBatchNorm``, on GPUs only; Keras' ``synchronized`` BatchNormalization);
* the dropout masks: each PyTorch process draws its own (``replica_seed``);
  Keras' replicas share their generator's state, so each draws the same
  masks for its share of the batch.

Only the first process (rank 0) writes the run's folder, which every process
reads on ``--resume``.
"""

import os
from dataclasses import dataclass

import numpy as np

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for each process
RENDEZVOUS = ("MASTER_ADDR", "MASTER_PORT")  # and where the processes meet (init_process_group's env://)


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
    missing = [name for name in RENDEZVOUS if name not in environ]
    if world_size > 1 and missing:  # where the processes meet, which torchrun sets beside the others
        raise ValueError(f"WORLD_SIZE={world_size} makes this one of {world_size} processes, but "
                         f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: start the "
                         "processes with torchrun --nproc_per_node N, or unset WORLD_SIZE for one process")
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


def place_for(framework: str, replicas: int, environ=os.environ) -> Place:
    """This process's place in a run of ``framework`` on ``replicas``:
    PyTorch's run one process each, Keras' all in one process. ValueError
    when torchrun started another number of processes."""
    found = place(environ)
    processes = replicas if framework == "torch" else 1
    if found.world_size != processes:
        raise ValueError(f"the run is configured for {replicas} replica(s) in {processes} process(es), but this "
                         f"process is one of {found.world_size} (torchrun's WORLD_SIZE); PyTorch runs one process "
                         "per replica (torchrun --nproc_per_node N), Keras one process for all (--replicas N)")
    return found
