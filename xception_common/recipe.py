"""The paper's training recipe (sections 4.2 and 4.3), once for both frameworks,
and a second one for CIFAR-scale data.

SGD with momentum 0.9, an initial learning rate of 0.045 multiplied by 0.94
every 2 epochs, weight decay 1e-5, dropout 0.5 before the classifier, and
Polyak averaging of the weights for evaluation: an exponential moving average
of the weights. The paper does not give the averaging rate; ``EMA_DECAY`` is
ours, and so is ``BN_BATCHES``: before each evaluation, the live and the
averaged model each get BatchNorm statistics of their own, averaged over that
many training batches (0: the live model's running statistics, for both).

Weight decay here is the paper's (TensorFlow's) L2 penalty, coupled to the
gradient: ``WEIGHT_DECAY / 2 · ‖w‖²`` is added to the loss for every
convolution and dense kernel, so each step adds ``WEIGHT_DECAY · w`` to their
gradients. BatchNorm parameters and biases are not decayed. Keras gets it from
kernel regularizers, PyTorch from ``SGD(weight_decay=...)`` on the kernels'
parameter group.

``RECIPES`` names the recipes a run can choose: ``paper``, the default, and
``cifar``, for a short run on small data. The paper's schedule was made for
ImageNet over 100+ epochs: after 30 epochs its rate is still 40% of the start.
The CIFAR recipe warms up linearly for ``warmup_epochs`` from a tenth of its
peak, then anneals to zero by the run's last step along a cosine; its peak is
scaled to the batch size (``peak · batch / reference_batch``); it uses
Nesterov momentum and a stronger weight decay, on the kernels only as in the
paper. ``deviations`` lists what differs from the paper.
"""

from dataclasses import asdict, dataclass
from math import cos, pi

INITIAL_LEARNING_RATE = 0.045
LEARNING_RATE_DECAY = 0.94
EPOCHS_PER_DECAY = 2
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-5
DROPOUT = 0.5
EMA_DECAY = 0.999
BN_BATCHES = 20


@dataclass(frozen=True)
class Recipe:
    name: str
    peak_learning_rate: float
    schedule: str  # "staircase": × decay every epochs_per_decay; "cosine": warm-up, then cosine to 0
    learning_rate_decay: float = LEARNING_RATE_DECAY
    epochs_per_decay: int = EPOCHS_PER_DECAY
    warmup_epochs: int = 0
    reference_batch: int | None = None  # the peak is for this batch size, scaled linearly; None: any batch
    momentum: float = MOMENTUM
    nesterov: bool = False
    weight_decay: float = WEIGHT_DECAY

    def peak(self, batch_size: int) -> float:
        """The peak learning rate for ``batch_size``."""
        return self.peak_learning_rate * (batch_size / self.reference_batch if self.reference_batch else 1)

    def learning_rate_at(self, step: int, steps_per_epoch: int, epochs: int, batch_size: int) -> float:
        """The rate of optimizer step ``step`` (from 0) of a run of ``epochs``."""
        peak = self.peak(batch_size)
        if self.schedule == "staircase":
            return peak * self.learning_rate_decay ** (step // steps_per_epoch // self.epochs_per_decay)
        warmup = self.warmup_epochs * steps_per_epoch
        if step < warmup:
            return peak * (WARMUP_START + (1 - WARMUP_START) * step / warmup)
        progress = min(step - warmup, self.decay_steps(steps_per_epoch, epochs)) / self.decay_steps(
            steps_per_epoch, epochs)
        return peak * 0.5 * (1 + cos(pi * progress))

    def decay_steps(self, steps_per_epoch: int, epochs: int) -> int:
        """Steps of the cosine, from the end of the warm-up to the run's end."""
        return max(1, (epochs - self.warmup_epochs) * steps_per_epoch)


WARMUP_START = 0.1  # the warm-up starts at this fraction of the peak
PAPER = Recipe("paper", INITIAL_LEARNING_RATE, "staircase")
CIFAR = Recipe("cifar", 0.1, "cosine", warmup_epochs=2, reference_batch=128, nesterov=True, weight_decay=5e-4)
RECIPES = {recipe.name: recipe for recipe in (PAPER, CIFAR)}


def deviations(recipe: Recipe) -> dict:
    """What ``recipe`` sets otherwise than the paper's, as {field: value}."""
    paper = asdict(PAPER)
    return {key: value for key, value in asdict(recipe).items() if key != "name" and value != paper[key]}


def learning_rate(epoch: int) -> float:
    """The learning rate during ``epoch`` (counted from 0): epochs 0 and 1 at
    0.045, epochs 2 and 3 at 0.045 · 0.94, and so on."""
    return INITIAL_LEARNING_RATE * LEARNING_RATE_DECAY ** (epoch // EPOCHS_PER_DECAY)
