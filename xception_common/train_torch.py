"""Training the PyTorch Xception with the paper's recipe, or the CIFAR one.

Data that fit in memory stay on the device as uint8 tensors; each batch is
gathered, cropped, flipped, resized and scaled there, so no loader runs beside
the GPU. Data too large for that are streamed: ``DataLoader`` worker processes
decode and resize each batch's files, and the device crops, flips and scales
them the same way. The model runs in the config's precision (autocast, with
gradient scaling for float16) and with channels-last memory; on
several processes under torchrun, through ``DistributedDataParallel``
(``distributed`` says how they share the work).
"""

import contextlib
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from tqdm.auto import tqdm

from . import data, distributed, recipe
from .epoch_plan import EpochPlan, padding_of, plan_of, steps_per_epoch
from .runs import PREDICTIONS, atomic_write, write_predictions
from .seeding import seed_all
from .torch_xception import Xception


def resolve_device(device) -> torch.device:
    """The torch device that ``device`` names ("cpu", "cuda", "cuda:1", a
    ``torch.device``); None: the first GPU when there is one, else the CPU.
    Raises ValueError, saying what is allowed, for anything else or for a GPU
    this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    allowed = f"device must be None, 'cpu' or 'cuda', optionally followed by ':N', got {device!r}"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(allowed) from error
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(allowed)
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def process_device(device, place: distributed.Place) -> torch.device:
    """The device a process trains on: ``device`` when given; on several
    processes with GPUs, the one of its local rank; else ``resolve_device``'s choice."""
    if device is None and place.world_size > 1 and torch.cuda.is_available():
        device = f"cuda:{place.local_rank}"
    return resolve_device(device)


def check_device(config, device) -> torch.device:
    """The device this process trains ``config`` on (``process_device``).
    Raises ValueError, saying what is allowed, for a device it cannot use,
    so that a run is refused before its folder is written."""
    resolved = process_device(device, distributed.place_for(config.framework, config.replicas))
    if config.sync_batch_norm and resolved.type != "cuda":
        raise ValueError(f"sync_batch_norm needs GPUs: PyTorch's SyncBatchNorm runs on CUDA devices only, not "
                         f"{resolved}; without it each process normalises over its share of the batch")
    return resolved


def gpu_capability(device: torch.device) -> tuple[int, int] | None:
    """The CUDA compute capability of ``device``; None for a CPU."""
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else None


def kernels(model: nn.Module) -> list[nn.Parameter]:
    """Convolution and dense kernels, the parameters with more than one
    dimension: the only ones weight decay applies to, as in Keras."""
    return [p for p in model.parameters() if p.ndim > 1]


def make_optimizer(model: nn.Module, training_recipe: recipe.Recipe = recipe.PAPER,
                   batch_size: int = 1) -> torch.optim.SGD:
    """SGD with the recipe's momentum, at its peak rate for ``batch_size``;
    its weight decay on the kernels only."""
    decayed = kernels(model)
    others = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decayed, "weight_decay": training_recipe.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=training_recipe.peak(batch_size),
        momentum=training_recipe.momentum,
        nesterov=training_recipe.nesterov,
    )


def make_scheduler(optimizer: torch.optim.Optimizer,
                   training_recipe: recipe.Recipe = recipe.PAPER) -> torch.optim.lr_scheduler.StepLR:
    """A staircase recipe's schedule (the paper's: × 0.94 every 2 epochs);
    call ``step()`` once at the end of each epoch."""
    if training_recipe.schedule != "staircase":
        raise ValueError(f"make_scheduler is for staircase recipes; the {training_recipe.name} recipe's "
                         f"{training_recipe.schedule} schedule is make_cosine_scheduler's")
    return torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=training_recipe.epochs_per_decay, gamma=training_recipe.learning_rate_decay
    )


def make_cosine_scheduler(optimizer: torch.optim.Optimizer, training_recipe: recipe.Recipe, steps_per_epoch: int,
                          epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A linear warm-up from ``recipe.WARMUP_START`` of the optimizer's rate,
    then a cosine to zero at the run's last step; call ``step()`` after every
    optimizer step."""
    warmup = training_recipe.warmup_epochs * steps_per_epoch
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=training_recipe.decay_steps(steps_per_epoch, epochs))
    if not warmup:
        return cosine
    ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=recipe.WARMUP_START, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])


def l2_penalty(model: nn.Module, weight_decay: float = recipe.WEIGHT_DECAY) -> torch.Tensor:
    """The loss term whose gradient SGD's ``weight_decay`` adds: reported
    with the loss, as Keras reports its regularization losses. One fused
    norm over all kernels, since training adds it at every step."""
    return weight_decay / 2 * torch.nn.utils.get_total_norm(kernels(model)) ** 2


class PolyakAverage(AveragedModel):
    """The paper's Polyak averaging: an exponential moving average of the
    weights, ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))``,
    with an update that stays on the device.

    ``AveragedModel.update_parameters`` hands its averaging function the
    number of updates so far, and for that copies its counter, a tensor in
    host memory, to the device at every call (as of torch 2.14); a blocking copy
    from host memory waits for the device to finish its queue, so each
    training step would wait for the one before. The EMA function ignores
    the counter, so here it is given the host's. Everything else is as in
    ``AveragedModel``: the first call copies the weights, the BatchNorm
    buffers follow the live model's, and the state dict (``module.*`` and
    ``n_averaged``) is the same, so checkpoints load either way."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay))

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        averaged, live = list(self.module.parameters()), [p.detach() for p in model.parameters()]
        if self.n_averaged == 0:  # read on the host
            torch._foreach_copy_(averaged, live)
        else:
            self.multi_avg_fn(averaged, live, self.n_averaged)
        torch._foreach_copy_(list(self.module.buffers()), [b.detach() for b in model.buffers()])
        self.n_averaged += 1


def augment(images: torch.Tensor, rows, cols, flips, padding: int) -> torch.Tensor:
    """Zero-pad a uint8 NCHW batch, crop each image back to its size at its
    own offset, and mirror the flagged ones."""
    n, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    device = images.device
    y = torch.as_tensor(rows, device=device)[:, None] + torch.arange(height, device=device)
    x = torch.as_tensor(cols, device=device)[:, None] + torch.arange(width, device=device)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    cropped = padded[batch, channel, y[:, None, :, None], x[:, None, None, :]]
    flips = torch.as_tensor(flips, device=device)[:, None, None, None]
    return torch.where(flips, cropped.flip(-1), cropped)


def to_model_input(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 NCHW → float in [-1, 1] at ``image_size`` (bilinear), in the
    channels-last memory the model trains in."""
    x = images.float()
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return (x / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)


def planned_batch(images, plan, step: int, padding: int, image_size: int) -> torch.Tensor:
    """The model input of batch ``step`` of an epoch plan, from its uint8 NCHW
    images on the device: cropped, flipped, resized and scaled."""
    crops = augment(images, plan.rows[step], plan.cols[step], plan.flips[step], padding)
    return to_model_input(crops, image_size)


def training_batch(images, labels, plan, step: int, padding: int, image_size: int):
    """Batch ``step`` of an epoch plan, from uint8 NCHW images on the device:
    gathered, cropped, flipped, resized and scaled."""
    index = torch.as_tensor(plan.order[step], device=images.device)
    return planned_batch(images[index], plan, step, padding, image_size), labels[index]


class ImagesInMemory:
    """A split's images as one uint8 NCHW tensor on the device, with its labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device):
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
        self.labels = torch.from_numpy(labels).long().to(device)

    def placed(self, plan: EpochPlan) -> EpochPlan:
        """``plan`` as tensors on the device, copied in one go: a copy from
        host memory at each step would wait there for the GPU to finish the
        steps queued before it, so the host could not queue the next one."""
        return plan.map(lambda array: torch.as_tensor(array, device=self.images.device))

    def batches(self, rows):
        """The uint8 images and labels of each list of indices in ``rows``."""
        for indices in rows:
            index = torch.as_tensor(indices, device=self.images.device)
            yield self.images[index], self.labels[index]


class ImageFilesDataset(torch.utils.data.Dataset):
    """A split's image files, each decoded and resized to ``size`` when asked for."""

    def __init__(self, reader: data.ImageReader, paths: tuple[str, ...], labels: np.ndarray, size: int):
        self.reader, self.paths, self.labels, self.size = reader, paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.reader.read(self.paths[index], self.size)
        return torch.from_numpy(image).permute(2, 0, 1), int(self.labels[index])


class StreamedImages:
    """A split's image files, read as training asks for them: decoded and
    resized in the worker processes of a ``DataLoader``, a few batches ahead,
    then moved to the device. Memory holds those batches, whatever the
    number of images."""

    def __init__(self, files: data.ImageFiles, split: str, image_size: int, device: torch.device, workers: int):
        paths, labels = (files.train, files.y_train) if split == "train" else (files.test, files.y_test)
        self.dataset = ImageFilesDataset(data.ImageReader(files.source), paths, labels, image_size)
        self.labels = torch.from_numpy(labels).long().to(device)
        self.device, self.workers = device, workers

    def placed(self, plan: EpochPlan) -> EpochPlan:
        """``plan`` with its crops and flips on the device, copied in one go
        (see ``ImagesInMemory.placed``); its order stays in host memory, where
        the DataLoader takes its indices."""
        return EpochPlan(plan.order, *(torch.as_tensor(array, device=self.device)
                                       for array in (plan.rows, plan.cols, plan.flips)))

    def batches(self, rows):
        """The uint8 images and labels of each list of indices in ``rows``."""
        # A generator of its own: the workers' seeds would otherwise be drawn
        # from the global one, and shift the dropout masks that follow.
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=(list(indices) for indices in rows),
                                             num_workers=self.workers, pin_memory=self.device.type == "cuda",
                                             generator=torch.Generator())
        for images, labels in loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def default_workers() -> int:
    """Worker processes that decode streamed images: every core but one, at most 8."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


class Trainer:
    """One training run: model, optimizer, schedule, averaged weights, data."""

    def __init__(self, dataset, config, device=None, progress=True, workers: int | None = None):
        self.config = config
        self.device = check_device(config, device)
        self.place = distributed.place_for(config.framework, config.replicas)
        self.replicated = self.place.world_size > 1
        self.progress = progress and self.place.writes
        self.dataset = dataset
        self.gpu = self.device.type == "cuda"
        self.precision = config.compute_dtype(gpu_capability(self.device))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "float16")
        seed_all(config.seed, ["torch"])
        self.model = Xception(len(dataset.class_names), dropout=recipe.DROPOUT, **config.model_options())
        if config.sync_batch_norm:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if self.replicated:  # the same initial weights everywhere, dropout masks of each process's own
            torch.manual_seed(distributed.replica_seed(config.seed, self.place.rank))
        # Channels-last memory on every device: on a GPU for its convolution
        # kernels, and on a 2-core CPU a training step at 71 or 128 px took
        # 1.26 to 1.29 times less time than with the default layout.
        self.model = self.model.to(self.device, memory_format=torch.channels_last)
        if self.gpu:
            torch.backends.cudnn.benchmark = True
        chosen = config.training_recipe()
        self.weight_decay = chosen.weight_decay
        self.optimizer = make_optimizer(self.model, chosen, config.batch_size)
        self.scheduler_steps_each_batch = chosen.schedule == "cosine"
        if self.scheduler_steps_each_batch:
            steps = steps_per_epoch(len(dataset.y_train), config.batch_size)
            self.scheduler = make_cosine_scheduler(self.optimizer, chosen, steps, config.epochs)
        else:
            self.scheduler = make_scheduler(self.optimizer, chosen)
        # Training steps run through DistributedDataParallel on several
        # processes (it averages the gradients over them), and through
        # torch.compile when asked; evaluation and the BatchNorm statistics
        # passes run the model itself, eagerly (they run once an epoch).
        forward = self.model
        if self.replicated:
            forward = DistributedDataParallel(self.model, device_ids=[self.device] if self.gpu else None)
        self.forward = torch.compile(forward, mode=config.compile_mode) if config.compile_mode else forward
        self.ema = PolyakAverage(self.model, config.ema_decay)
        if isinstance(dataset, data.ImageFiles):  # read as needed, at image_size
            workers = default_workers() if workers is None else workers
            self.train = StreamedImages(dataset, "train", config.image_size, self.device, workers)
            self.test = StreamedImages(dataset, "test", config.image_size, self.device, workers)
        else:
            self.train = ImagesInMemory(dataset.x_train, dataset.y_train, self.device)
            self.test = ImagesInMemory(dataset.x_test, dataset.y_test, self.device)
        self.padding = padding_of(dataset, config.image_size)
        self.epochs_done = 0
        self.history = []  # one record per finished epoch

    def _gpu_indices(self) -> list[int]:
        """The trainer's GPU as a list of one index, for ``fork_rng``; none on a CPU."""
        if not self.gpu:
            return []
        return [self.device.index if self.device.index is not None else torch.cuda.current_device()]

    def _autocast(self):
        mixed = self.precision != "float32"
        return torch.autocast(self.device.type, dtype=getattr(torch, self.precision), enabled=mixed)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, plan: EpochPlan, step: int):
        """One SGD step on batch ``step`` of the placed ``plan``, from its
        uint8 images and labels on the device, then the Polyak average's
        update and, for a per-batch schedule, the rate's; returns the batch's
        loss (with the L2 term) and accuracy as tensors on the device, so
        that nothing waits for the GPU."""
        x = planned_batch(images, plan, step, self.padding, self.config.image_size)
        with self._autocast():
            logits = self.forward(x)
            loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update_parameters(self.model)
        if self.scheduler_steps_each_batch:
            self.scheduler.step()
        with torch.no_grad():
            accuracy = (logits.argmax(1) == labels).float().mean()
            return loss.detach() + l2_penalty(self.model, self.weight_decay), accuracy

    def placed_plan(self, epoch: int) -> EpochPlan:
        """This process's share of epoch ``epoch``'s plan, on the device."""
        share = plan_of(self.dataset, self.config, epoch).share(self.place.rank, self.place.world_size)
        return self.train.placed(share)

    def train_epoch(self) -> tuple[float, float]:
        """One epoch of SGD; returns the mean training loss and accuracy."""
        plan = self.placed_plan(self.epochs_done)
        self.model.train()
        losses, correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        batches = tqdm(self.train.batches(plan.order), desc=f"epoch {self.epochs_done + 1}", total=plan.steps,
                       disable=not self.progress, leave=False)
        for step, (images, labels) in enumerate(batches):
            loss, accuracy = self.train_step(images, labels, plan, step)
            losses += loss
            correct += accuracy
        if not self.scheduler_steps_each_batch:
            self.scheduler.step()
        self.epochs_done += 1
        totals = torch.stack([losses, correct]) / plan.steps
        if self.replicated:  # the means over the global batch
            dist.all_reduce(totals)
            totals /= self.place.world_size
        loss, accuracy = totals.tolist()
        return loss, accuracy

    @torch.no_grad()
    def test_logits(self, model: nn.Module, flipped: bool = False) -> torch.Tensor:
        """``model``'s float32 logits for the whole test split (mirrored left
        to right with ``flipped``), with the BatchNorm statistics it has."""
        model.eval()
        logits = []
        count, size = len(self.test.labels), self.config.batch_size
        in_order = (np.arange(start, min(start + size, count)) for start in range(0, count, size))
        for images, _ in self.test.batches(in_order):
            with self._autocast():
                logits.append(model(to_model_input(images.flip(-1) if flipped else images,
                                                   self.config.image_size)).float())
        return torch.cat(logits)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> tuple[float, float]:
        """Loss (with the L2 term) and accuracy on the whole test split, with
        the BatchNorm statistics ``model`` has."""
        logits = self.test_logits(model)
        loss = F.cross_entropy(logits, self.test.labels).item()
        accuracy = (logits.argmax(1) == self.test.labels).float().mean().item()
        return loss + l2_penalty(model, self.weight_decay).item(), accuracy

    @contextlib.contextmanager
    def own_statistics(self, model: nn.Module):
        """Give ``model`` BatchNorm statistics that belong to its weights for
        the ``with`` block: averaged over the first ``bn_batches`` batches of
        the epoch last trained, in training mode
        (``torch.optim.swa_utils.update_bn``); with ``bn_batches`` 0, the live
        model's running statistics (only the trainable weights are averaged,
        as in Keras). The model's own statistics and the random state are put
        back after, so training and its checkpoint are as without it."""
        statistics = {name: buffer.clone() for name, buffer in model.named_buffers()}
        c = self.config
        try:
            if c.bn_batches == 0:
                for own, live in zip(model.buffers(), self.model.buffers()):
                    own.copy_(live)
            else:
                plan = plan_of(self.dataset, c, self.epochs_done - 1)
                batches = (planned_batch(images, plan, step, self.padding, c.image_size)
                           for step, (images, _) in enumerate(self.train.batches(plan.order[: c.bn_batches])))
                with torch.random.fork_rng(devices=self._gpu_indices()), self._autocast():
                    update_bn(batches, model)
            yield model
        finally:
            with torch.no_grad():
                for name, buffer in model.named_buffers():
                    buffer.copy_(statistics[name])

    def evaluate_live_and_averaged(self) -> tuple[float, float, float]:
        """Test loss and accuracy of the live model, and accuracy of the
        averaged one, each with BatchNorm statistics of its own."""
        with self.own_statistics(self.model):
            loss, accuracy = self.evaluate(self.model)
        with self.own_statistics(self.ema.module):
            return loss, accuracy, self.evaluate(self.ema.module)[1]

    def predictions(self) -> dict[str, np.ndarray]:
        """Class probabilities on the test split of the live and the averaged
        model, each with BatchNorm statistics of its own, for the images as
        they are and mirrored (``runs.PREDICTED`` names them)."""
        probabilities = {}
        for name, model in (("live", self.model), ("averaged", self.ema.module)):
            with self.own_statistics(model):
                for flipped in (False, True):
                    logits = self.test_logits(model, flipped)
                    probabilities[name + "_flipped" * flipped] = logits.softmax(1).cpu().numpy()
        return probabilities

    def run_epoch(self) -> dict:
        """Train and evaluate one epoch; its record joins the history."""
        epoch = self.epochs_done
        learning_rate = self.scheduler.get_last_lr()[0]
        start = time.perf_counter()
        loss, accuracy = self.train_epoch()
        val_loss, val_accuracy, val_accuracy_ema = self.evaluate_live_and_averaged()
        if self.gpu:
            torch.cuda.synchronize()
        record = {
            "epoch": epoch, "lr": learning_rate, "loss": loss, "accuracy": accuracy,
            "val_loss": val_loss, "val_accuracy": val_accuracy,
            "val_accuracy_ema": val_accuracy_ema, "seconds": time.perf_counter() - start,
        }
        self.history.append(record)
        return record

    def state_dict(self) -> dict:
        state = {
            "epochs_done": self.epochs_done,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict(),
            "rng": self._gathered(torch.get_rng_state()),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
        }
        if self.gpu:
            state["cuda_rng"] = self._gathered(torch.cuda.get_rng_state(self.device))
        return state

    def _gathered(self, rng_state: torch.Tensor):
        """A random state as the checkpoint keeps it: this process's, or on
        several processes a list of every process's (called by all of them)."""
        if not self.replicated:
            return rng_state
        states = [None] * self.place.world_size
        dist.all_gather_object(states, rng_state)
        return states

    def _own(self, saved):
        """This process's random state from what ``_gathered`` kept."""
        return saved[self.place.rank] if self.replicated else saved

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.ema.load_state_dict(state["ema"])
        if state["scaler"]:  # empty when the run started without float16
            self.scaler.load_state_dict(state["scaler"])
        # Random states are CPU tensors, wherever the checkpoint was read to.
        torch.set_rng_state(self._own(state["rng"]).cpu())
        if self.gpu and "cuda_rng" in state:
            torch.cuda.set_rng_state(self._own(state["cuda_rng"]).cpu(), self.device)
        self.epochs_done = state["epochs_done"]
        self.history = list(state.get("history", []))


@contextlib.contextmanager
def process_group(place: distributed.Place, device: torch.device):
    """For the ``with`` block, the default process group of a run on several
    processes (NCCL between GPUs, gloo between CPUs), made from torchrun's
    environment; nothing for one process, or when the caller has made it."""
    if place.world_size == 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    try:
        yield
    finally:
        dist.destroy_process_group()


def fit(config, dataset, checkpoint: Path | None, saved, earlier=(), progress=True, device=None,
        workers: int | None = None) -> list[dict]:
    """Train to ``config.epochs``, resuming from ``checkpoint`` when it exists;
    after every epoch, save the checkpoint (with the history), then call
    ``saved(history)``. Returns the history. ``earlier`` is the history of a
    checkpoint from before checkpoints kept theirs. A ``dataset`` of
    ``data.ImageFiles`` is streamed, decoded by ``workers`` processes
    (default: ``default_workers()``).

    On several processes (``distributed``) each one calls this; all of them
    read the checkpoint, train and evaluate, and the first one alone writes
    the checkpoint and the predictions and calls ``saved``."""
    place = distributed.place_for(config.framework, config.replicas)
    device = check_device(config, device)
    with process_group(place, device):
        trainer = Trainer(dataset, config, device=device, progress=progress, workers=workers)
        if checkpoint and checkpoint.exists():
            # Onto the CPU: the RNG states are taken only as CPU tensors, and
            # load_state_dict moves the rest to the trainer's device.
            trainer.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
            trainer.history = trainer.history or list(earlier[: trainer.epochs_done])
        while trainer.epochs_done < config.epochs:
            trainer.run_epoch()
            state = trainer.state_dict()  # on every process: it gathers their random states
            if place.writes:
                if checkpoint:
                    atomic_write(checkpoint, lambda partial: torch.save(state, partial))
                saved(trainer.history)
        if checkpoint and trainer.epochs_done:
            probabilities = trainer.predictions()  # on every process: SyncBatchNorm statistics need them all
            if place.writes:
                write_predictions(checkpoint.with_name(PREDICTIONS), trainer.dataset.y_test, probabilities)
    return trainer.history
