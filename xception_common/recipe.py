"""The paper's training recipe (sections 4.2 and 4.3), once for both frameworks.

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
"""

INITIAL_LEARNING_RATE = 0.045
LEARNING_RATE_DECAY = 0.94
EPOCHS_PER_DECAY = 2
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-5
DROPOUT = 0.5
EMA_DECAY = 0.999
BN_BATCHES = 20


def learning_rate(epoch: int) -> float:
    """The learning rate during ``epoch`` (counted from 0): epochs 0 and 1 at
    0.045, epochs 2 and 3 at 0.045 · 0.94, and so on."""
    return INITIAL_LEARNING_RATE * LEARNING_RATE_DECAY ** (epoch // EPOCHS_PER_DECAY)
