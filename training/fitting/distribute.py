"""Data-parallel training of the VAE on several devices or machines (``tf.distribute``).

Every worker streams the same shuffled global batches (the data set's seed) and every replica
trains on its slice of each one; the gradients are summed over the replicas, clipped as one
global gradient and applied once. A step therefore moves the weights as one device would with
the same global batch (to the order of float32 summation), whatever the number of devices or
workers, and a run can be resumed with another one.

Strategies (:data:`STRATEGIES`):

``none``
    The default strategy: one device (TensorFlow's choice: a GPU when it sees one).
``mirrored``
    ``tf.distribute.MirroredStrategy`` over the GPUs of this machine, or over ``cpu_replicas``
    logical devices of its CPU (for machines without an accelerator, and for tests).
``multi-worker``
    ``tf.distribute.MultiWorkerMirroredStrategy`` across machines (or processes) described by
    the ``TF_CONFIG`` environment variable of each worker. Every worker runs the same command
    with its own work directory: each one checkpoints the same weights, the chief's is the
    result.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import tensorflow as tf

from galsim_hub.errors import GalSimHubError

__all__ = ["STRATEGIES", "DistributionError", "make_strategy", "is_chief", "DataParallelStep"]

STRATEGIES = ("none", "mirrored", "multi-worker")


class DistributionError(GalSimHubError, ValueError):
    """A distribution strategy cannot be set up as asked."""


def _split_host_cpu(replicas: int) -> list[str]:
    """Split the host CPU into ``replicas`` logical devices; return their names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is None or len(current) != replicas:
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
        except RuntimeError:
            raise DistributionError(
                f"cannot split the CPU into {replicas} devices: TensorFlow has already started in this "
                "process; create the strategy first (a new process)"
            ) from None
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def _check_tf_config() -> dict:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise DistributionError(
            "multi-worker training needs TF_CONFIG on every worker: "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": I}}'
        )
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        if task["type"] not in config["cluster"] or not 0 <= int(task["index"]) < len(config["cluster"][task["type"]]):
            raise KeyError("task")
    except (ValueError, KeyError, TypeError) as error:
        raise DistributionError(f"TF_CONFIG is not a cluster and a task of it ({error}): {text[:200]}") from None
    return {"workers": len(workers), **task}


def make_strategy(name: str = "none", cpu_replicas: int | None = None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name`` (one of :data:`STRATEGIES`).

    Parameters
    ----------
    name : str
        ``"none"``, ``"mirrored"`` or ``"multi-worker"``.
    cpu_replicas : int, optional
        ``mirrored`` only: split the host CPU into this many logical devices and mirror over them
        (instead of over the GPUs). Must come before TensorFlow runs anything in the process.

    Returns
    -------
    tf.distribute.Strategy

    Raises
    ------
    DistributionError
        An unknown name, ``cpu_replicas`` without ``mirrored``, a missing or malformed
        ``TF_CONFIG`` for ``multi-worker``, or a CPU split after TensorFlow started.
    """
    if name not in STRATEGIES:
        raise DistributionError(f"unknown distribution strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if cpu_replicas is not None:
        if name != "mirrored":
            raise DistributionError("cpu_replicas (--cpu-replicas) splits the CPU for the 'mirrored' strategy only")
        if not isinstance(cpu_replicas, int) or isinstance(cpu_replicas, bool) or cpu_replicas < 1:
            raise DistributionError(f"cpu_replicas must be a positive integer, got {cpu_replicas!r}")
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = _split_host_cpu(cpu_replicas) if cpu_replicas else None
        return tf.distribute.MirroredStrategy(devices=devices)
    _check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process is the chief of ``strategy`` (always, but for non-first workers)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


class DataParallelStep:
    """One optimisation step of a model over the replicas of ``strategy``.

    Parameters
    ----------
    strategy : tf.distribute.Strategy
        Where the model's variables live (created under its scope).
    loss_terms : callable
        ``loss_terms(batch, noise, *args) -> dict`` of float32 scalar means over the examples it
        is given, with the objective under ``"loss"``; every entry is averaged over the replicas.
    variables : list of tf.Variable
        The trained variables.
    optimizer : keras.optimizers.Optimizer
        Built without gradient clipping (the step clips the summed gradient).
    global_batch : int
        Examples per step on each worker (the global batch): a multiple of the replicas.
    clip_norm : float, optional
        Clip the global norm of the whole step's gradient to this.
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        loss_terms: Callable[..., dict],
        variables: list,
        optimizer: Any,
        global_batch: int,
        clip_norm: float | None = None,
    ):
        replicas = strategy.num_replicas_in_sync
        if global_batch % replicas:
            raise DistributionError(
                f"the batch size ({global_batch}) must be a multiple of the {replicas} replicas of the "
                f"{type(strategy).__name__} (each trains on an equal slice of every batch)"
            )
        self.strategy = strategy
        self.replicas = replicas
        self.slice = global_batch // replicas
        self._loss_terms = loss_terms
        self._variables = variables
        self._optimizer = optimizer
        self._clip_norm = clip_norm
        self._step = tf.function(self._distributed_step)

    def _replica_step(self, batch, noise, *args):
        with tf.GradientTape() as tape:
            terms = self._loss_terms(batch, noise, *args)
            share = terms["loss"] / self.replicas
        gradients = tape.gradient(share, self._variables)
        gradients = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        if self._clip_norm is not None:
            gradients, _ = tf.clip_by_global_norm(gradients, self._clip_norm)
        # The optimizer sums what the replicas give it again: each gives its share of the whole.
        if self.replicas > 1:
            gradients = [g / self.replicas for g in gradients]
        self._optimizer.apply_gradients(zip(gradients, self._variables))
        return terms

    def _distributed_step(self, batch, noise, *args):
        terms = self.strategy.run(self._replica_step, args=(batch, noise, *args))
        return {
            key: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for key, value in terms.items()
        }

    def _distribute(self, tensors):
        if self.replicas == 1:
            return tensors
        size = self.slice

        def slice_of(context):
            start = context.replica_id_in_sync_group * size
            return tf.nest.map_structure(lambda t: t[start : start + size], tensors)

        return self.strategy.experimental_distribute_values_from_function(slice_of)

    def __call__(self, batch: dict, noise: tf.Tensor, *args) -> dict:
        """Run one step on a global ``batch`` and its latent ``noise``; return the terms' means."""
        return self._step(self._distribute(batch), self._distribute(noise), *args)
