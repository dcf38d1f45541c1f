"""Xception (Chollet, CVPR 2017) in Keras and PyTorch, for the tutorial notebooks.

The submodules are imported on demand so that a PyTorch-only or a Keras-only
environment can use its half:

* ``architecture``: the network of Figure 5, described once for both builders;
* ``keras_xception.build_xception``: the Keras 3 functional model;
* ``torch_xception.Xception``: the PyTorch ``nn.Module``;
* ``convert.keras_to_torch`` / ``convert.torch_to_keras``: weight transfer;
* ``costs``: parameters and multiply-adds per layer in both frameworks;
* ``recipe``, ``data``, ``epoch_plan``: the paper's training recipe, the data
  sets and the epoch plan both frameworks share;
* ``runs``: a training run's options and folder; ``training.train`` trains
  it with ``train_keras`` or ``train_torch``; ``train`` is its command line;
* ``bench``: training and inference speed against the reference implementations;
* ``notebook``, ``plots``, ``diagrams``: what the notebooks display.
"""

__version__ = "0.1.0"

from .load_order import load_triton_first

# How triton was loaded before TensorFlow could break it (see load_order.py).
triton_load = load_triton_first()
