"""Data-parallel training of one cell's evaluation under ``torchrun`` (torch.distributed).

A single large cell (ImageNet-scale soft-label evaluation) can train its students on several
GPUs without changing the protocol. Every rank holds the whole set and draws the same batch
orders and augmentation seeds from the same generators, so all ranks see the same global batch:

* each batch is augmented whole (DSA, Mixup and CutMix draw per batch, so the draws and the mix
  partners are the single-process ones), then each rank trains on its contiguous part of it;
* a part's mean loss is weighted by its share of the batch and the gradients are summed over the
  ranks (one flattened all-reduce per step), which is the gradient of the whole batch's mean loss;
* BatchNorm layers of the students normalize with the whole batch's statistics
  (:class:`GlobalBatchNorm`: one gather forward, one sum backward, on any backend, CPU included);
* a batch smaller than the number of ranks is trained whole by every rank, with share
  ``1 / world_size`` and local BatchNorm statistics, so the sum is again the batch's gradient;
* teacher labels are computed on each rank's part only (replay stores are all-gathered), and
  test accuracy counts a part of the test split per rank and sums the counts.

So the same cell gives the same record as one process, up to floating-point summation order.
Optimizer state and the teacher need no synchronization: every rank applies the same summed
gradients to the same starting weights (broadcast from rank 0).

Single-process code passes ``parallel=None`` and the training loops run unchanged.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DataParallel:
    """This process's rank among ``world_size`` training one evaluation together.

    Args:
        rank: this process's rank (0 is the main rank: it writes records and reports).
        world_size: processes in the group.
    """

    def __init__(self, rank: int, world_size: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        self.rank = rank
        self.world_size = world_size
        #: Whether GlobalBatchNorm layers share statistics over the ranks on this batch.
        self.synchronized_batch = True

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, world_size={self.world_size})"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes records, saved sets and reports."""
        return self.rank == 0

    # -- splitting a global batch --------------------------------------------------------------
    def replicated(self, batch_size: int) -> bool:
        """A batch too small to give every rank a row is trained whole by every rank."""
        return batch_size < self.world_size

    def part(self, batch_size: int) -> slice:
        """The rows of a global batch of ``batch_size`` that this rank trains on (contiguous)."""
        return slice(*_part_bounds(batch_size, self.rank, self.world_size))

    def share(self, batch_size: int) -> float:
        """The weight of this rank's mean loss: its part's share of the batch."""
        if self.replicated(batch_size):
            return 1.0 / self.world_size
        part = self.part(batch_size)
        return (part.stop - part.start) / batch_size

    def local(self, rows: Tensor) -> Tensor:
        """This rank's part of a global batch (rows along dimension 0)."""
        return rows[self.part(len(rows))]

    @contextlib.contextmanager
    def batch(self, batch_size: int) -> Iterator[None]:
        """Forward passes of one global batch: BatchNorm statistics shared unless replicated."""
        previous = self.synchronized_batch
        self.synchronized_batch = not self.replicated(batch_size)
        try:
            yield
        finally:
            self.synchronized_batch = previous

    # -- collectives ---------------------------------------------------------------------------
    def sync_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Sum every parameter's gradient over the ranks (a missing gradient counts as zero)."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        parameters = [p for p in parameters if p.requires_grad]
        if not parameters:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for parameter in parameters:
            count = parameter.numel()
            parameter.grad = flat[offset : offset + count].view_as(parameter).clone()
            offset += count

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks."""
        if self.world_size == 1:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._collective_device())
        return float(self.sum_tensor(tensor).item())

    def sum_tensor(self, tensor: Tensor) -> Tensor:
        """A new tensor: ``tensor`` summed over the ranks."""
        total = tensor.clone()
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(total)
        return total

    def gather_tensor(self, tensor: Tensor) -> Tensor:
        """Every rank's ``tensor`` (same shape on all), stacked in rank order: ``world_size x ...``."""
        if self.world_size == 1:
            return tensor.unsqueeze(0)
        import torch.distributed as dist

        pieces = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(pieces, tensor.contiguous())
        return torch.stack(pieces)

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def broadcast_object(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (pickled; tensors come back on the CPU)."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._collective_device())
        return box[0]  # type: ignore[return-value]

    def gather_parts(self, part: Tensor, batch_size: int) -> Tensor:
        """The whole batch's rows from every rank's part (the inverse of :meth:`local`)."""
        if self.world_size == 1 or self.replicated(batch_size):
            return part
        longest = -(-batch_size // self.world_size)
        padded = part.new_zeros((longest, *part.shape[1:]))
        padded[: len(part)] = part
        pieces = self.gather_tensor(padded)
        rows = []
        for rank, piece in enumerate(pieces):
            start, stop = _part_bounds(batch_size, rank, self.world_size)
            rows.append(piece[: stop - start])
        return torch.cat(rows)

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def _collective_device(self) -> torch.device:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    # -- models --------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, device: torch.device | str) -> nn.Module:
        """A student ready for data-parallel training on ``device``: global BatchNorm, rank 0's
        initial weights (one process: ``model`` as it is)."""
        if self.world_size == 1:
            return model
        model = convert_batchnorm(model, self).to(device)  # NCCL broadcasts device tensors only
        self.broadcast_parameters(model)
        return model


def _part_bounds(batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``rank``'s part of a batch: contiguous, sizes differing by at most
    one; the whole batch when it is smaller than ``world_size`` (replicated)."""
    if batch_size < world_size:
        return 0, batch_size
    base, extra = divmod(batch_size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class _GlobalBatchNormFunction(torch.autograd.Function):
    """Batch normalization with statistics summed over the ranks, forward and backward.

    Forward: every rank's count, mean and sum of squared deviations, gathered, give the global
    mean and (biased) variance. Backward is BatchNorm's, with the two per-channel sums it
    needs (of ``dy`` and ``dy * x_hat``) summed over the ranks; the weight and bias gradients stay
    this rank's share, since the gradient sync adds the ranks' parameter gradients.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None, parallel: DataParallel, eps: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        # Each rank's count, mean and sum of squared deviations (two-pass), gathered in one
        # collective and combined exactly: M2 = sum_r M2_r + n_r (mean_r - mean)^2.
        count = x.new_tensor([x.numel() / x.shape[1]])
        local_mean = x.mean(dims)
        local_m2 = (x - local_mean.view(shape)).square().sum(dims)
        gathered = parallel.gather_tensor(torch.cat([count, local_mean, local_m2]))
        channels = x.shape[1]
        counts, means, m2s = gathered[:, :1], gathered[:, 1 : channels + 1], gathered[:, channels + 1 :]
        n = counts.sum(0)
        mean = (counts * means).sum(0) / n
        var = (m2s.sum(0) + (counts * (means - mean).square()).sum(0)) / n
        x_hat = x - mean.view(shape)
        inverse_std = torch.rsqrt(var + eps)
        x_hat.mul_(inverse_std.view(shape))
        out = x_hat if weight is None else torch.addcmul(bias.view(shape), x_hat, weight.view(shape))
        ctx.save_for_backward(x_hat, inverse_std, weight)
        ctx.parallel, ctx.count = parallel, n
        ctx.mark_non_differentiable(mean, var, n)
        return out, mean, var, n

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, *unused: Tensor) -> tuple[Tensor | None, ...]:
        x_hat, inverse_std, weight = ctx.saved_tensors
        dims = [0, *range(2, grad_out.dim())]
        shape = [1, -1] + [1] * (grad_out.dim() - 2)
        local = torch.cat([grad_out.sum(dims), (grad_out * x_hat).sum(dims)])
        channels = x_hat.shape[1]
        grad_weight = local[channels:].clone() if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = local[:channels].clone() if weight is not None and ctx.needs_input_grad[2] else None
        totals = ctx.parallel.sum_tensor(local) / ctx.count
        mean_grad, mean_grad_x_hat = totals[:channels], totals[channels:]
        scale = inverse_std if weight is None else inverse_std * weight
        grad_x = (grad_out - mean_grad.view(shape) - x_hat * mean_grad_x_hat.view(shape)) * scale.view(shape)
        return grad_x, grad_weight, grad_bias, None, None


class GlobalBatchNorm(nn.Module):
    """BatchNorm whose training statistics are the whole global batch's, over all ranks.

    Training on a shared batch normalizes with the global mean and variance and back-propagates
    through them (:class:`_GlobalBatchNormFunction`); evaluation and a replicated batch normalize
    locally, as ``nn.BatchNorm`` does. Running statistics follow PyTorch: ``momentum`` average,
    unbiased variance. It holds the source layer's parameters and buffers (the same tensors).
    """

    def __init__(self, source: nn.modules.batchnorm._BatchNorm, parallel: DataParallel) -> None:
        super().__init__()
        self.num_features = source.num_features
        self.eps = source.eps
        self.momentum = source.momentum
        self.affine = source.affine
        self.track_running_stats = source.track_running_stats
        self.parallel = parallel
        self.weight = source.weight
        self.bias = source.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(source, name))

    def forward(self, x: Tensor) -> Tensor:
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        if not (self.training and self.parallel.synchronized_batch and self.parallel.world_size > 1):
            keep_running = not self.training or self.track_running_stats
            return F.batch_norm(
                x,
                self.running_mean if keep_running else None,
                self.running_var if keep_running else None,
                self.weight,
                self.bias,
                self.training or not self.track_running_stats,
                momentum,
                self.eps,
            )
        out, mean, var, n = _GlobalBatchNormFunction.apply(x, self.weight, self.bias, self.parallel, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        return out


def convert_batchnorm(module: nn.Module, parallel: DataParallel) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`GlobalBatchNorm` (same tensors)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return GlobalBatchNorm(module, parallel)
    for name, child in module.named_children():
        converted = convert_batchnorm(child, parallel)
        if converted is not child:
            setattr(module, name, converted)
    return module


#: Minutes a collective may wait; rank 0 condenses the set alone while the others wait for it.
DEFAULT_TIMEOUT_MINUTES = 24 * 60


def from_environment(
    device: str | torch.device, *, environ: dict[str, str] | None = None, timeout_minutes: float | None = None
) -> DataParallel | None:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1``; ``None`` in a single process.

    The backend is NCCL on CUDA and Gloo on the CPU. ``timeout_minutes`` (default
    ``$CONDENSE_DIST_TIMEOUT_MINUTES`` or a day) bounds every collective, including the other
    ranks' wait while rank 0 condenses the set.
    """
    environ = dict(os.environ) if environ is None else environ
    world_size = int(environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    import torch.distributed as dist

    rank = int(environ["RANK"])
    if not dist.is_initialized():
        if timeout_minutes is None:
            timeout_minutes = float(environ.get("CONDENSE_DIST_TIMEOUT_MINUTES", DEFAULT_TIMEOUT_MINUTES))
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
        logger.info("data-parallel rank %d of %d (%s)", rank, world_size, backend)
    return DataParallel(rank, world_size)


def close(parallel: DataParallel | None, *, wait_for_others: bool = True) -> None:
    """Leave the process group, after a last barrier unless this rank is failing (the others may
    be inside another collective: waiting for them would hang until the timeout)."""
    if parallel is None or parallel.world_size == 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        if wait_for_others:
            dist.barrier()
        dist.destroy_process_group()


def single_or(parallel: DataParallel | None) -> DataParallel:
    """``parallel``, or the trivial group of one process."""
    return parallel if parallel is not None else SINGLE


#: One process: every batch whole, share 1, no collectives.
SINGLE = DataParallel(0, 1)


def describe(parallel: DataParallel | None) -> dict[str, Any]:
    """What a record says about data parallelism (empty for one process)."""
    if parallel is None or parallel.world_size == 1:
        return {}
    return {"data_parallel_world_size": parallel.world_size}
