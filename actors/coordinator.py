"""``CoordinatorActor``: the shared critic and the selector, driving every step of a
distributed multi-source mining run.

One step t (the maths is :class:`ganlode.methods.multisource.CriticSelector`'s):

1. draw u (B x d_u) from the run's seeded generator;
2. every generator actor returns x_i = G_i(M_i(u)) (and keeps its graph);
3. ``CriticSelector.step``: scores, supersample, selector counts, a critic step on real
   target images against the supersample, then dL/dx_i under the updated critic;
4. dL/dx_i goes to actor i, which back-propagates and steps its optimizers.

Step t's 4 and step t+1's 2 are one call per actor (``apply_and_sample(dL/dx_i of t, u of t+1)``),
so a step costs N remote calls and one wait, and the step count each call returns proves that
the actor applied step t. Until that call, step t's dL/dx_i wait here; a snapshot and the end
of :meth:`run_until` send them alone (``apply_gradient``), so every actor is at the
coordinator's step whenever those return. u is drawn at the start of step t+1, as in the
in-process reference, so the random stream is the reference's.

Only u, the x_i and the dL/dx_i travel, inline in the calls and their replies: u is small
(B x d_u), and :func:`ganlode.orchestrator.cluster.ensure_ray` lets a local cluster inline
objects up to 1 MiB (x_i of 64 28x28 images is 200 KB) instead of passing them through the
object store.

Faults. Every ``snapshot_every`` steps the coordinator keeps a snapshot: its own state, and
every actor's, which each actor also saves to its local file. If an actor dies (or answers with
a step count that is not the expected one, as a restarted actor does), the coordinator waits
for Ray to restart it (``__init__`` reloads the file), rolls itself and every actor whose state
moved on back to the snapshot, and replays. All randomness is drawn here, so the replayed steps
are the steps an uninterrupted run takes.

``info()`` also says where the coordinator's time went: ``selector_s`` (in ``CriticSelector.step``)
and ``wait_s`` (waiting for the actors' samples), summed over every step run.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import ray
import torch

from ..methods.multisource import MultiSourceConfig, build_selector, source_prefix, step_record
from ._runtime import keep_freed_memory, set_threads, torch_device
from .arch import unpack


class StaleActorError(RuntimeError):
    """An actor's step count is not the one this step expects (it was restarted, or a call failed)."""


# What the coordinator survives: a dead (restarted) actor, or one whose step count is off.
_RECOVERABLE = (ray.exceptions.RayActorError, StaleActorError)


class CoordinatorActor:
    """Holds the critic and selector; runs steps over the generator actors.

    Args:
        generators: handles of the N GeneratorActors, in source order.
        arch: the critic's architecture config (source 0's) as a dict (``architectures.to_dict``).
        critic_state: the shared critic's starting weights, passed to ``build_selector`` as given.
        images: the target training set, passed to ``build_selector`` as given.
        cfg: the run's MultiSourceConfig as a dict.
        threads: torch intra-op threads of this process.
        snapshot_every: steps between snapshots (a dead actor costs at most this many replayed steps).
        step_timeout_s: the longest wait for the actors within one step.
        restart_timeout_s: the longest wait for a dead actor to come back.
        files: the files ``arch`` rebuilds from (a TorchScript archive), as the generator actors take them.
    """

    def __init__(self, generators: Sequence[Any], arch: dict, critic_state: Any, images: Any, cfg: dict,
                 threads: int = 1, snapshot_every: int = 100,
                 step_timeout_s: float = 120.0, restart_timeout_s: float = 120.0,
                 files: list | dict[str, bytes] | None = None):
        set_threads(threads)
        keep_freed_memory()
        self.generators = list(generators)
        self.cfg = MultiSourceConfig.from_dict(cfg)
        self.selector = build_selector(unpack(arch, files), critic_state, images, len(self.generators),
                                       self.cfg, torch_device())
        self.snapshot_every = max(1, int(snapshot_every))
        self.step_timeout_s = step_timeout_s
        self.restart_timeout_s = restart_timeout_s
        self.snapshot: tuple[int, dict[str, torch.Tensor], list[dict[str, torch.Tensor]]] | None = None
        self.recoveries = 0
        self._pending: list[torch.Tensor] = []  # the last step's dL/dx_i, not yet sent
        self.selector_s = 0.0
        self.wait_s = 0.0

    # ------------------------------------------------------------ public (remote) methods

    def steps_done(self) -> int:
        return self.selector.steps_done

    def shares(self) -> list[float]:
        return [float(p) for p in self.selector.shares()]

    def info(self) -> dict[str, Any]:
        return {"steps_done": self.selector.steps_done, "recoveries": self.recoveries,
                "snapshot_step": None if self.snapshot is None else self.snapshot[0],
                "threads": torch.get_num_threads(), "selector_s": self.selector_s, "wait_s": self.wait_s}

    def run_until(self, target: int) -> list[dict[str, Any]]:
        """Run steps until ``target`` are done; the history rows of the steps past the start."""
        start = self.selector.steps_done
        rows: dict[int, dict[str, Any]] = {}
        while True:
            try:
                if self.snapshot is None:
                    self._take_snapshot()
                while self.selector.steps_done < target:
                    row = self._step()
                    if row["step"] > start:
                        rows[row["step"]] = row
                    if self.selector.steps_done % self.snapshot_every == 0:
                        self._take_snapshot()
                self._flush()
                break
            except _RECOVERABLE as e:
                self._recover(e)
        return [rows[s] for s in sorted(rows)]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The run's whole state at the current step (critic, selector, RNG and every source)."""
        target = self.selector.steps_done
        while self.snapshot is None or self.snapshot[0] != target:
            try:
                self._take_snapshot()
            except _RECOVERABLE as e:
                self._recover(e)
                self.run_until(target)  # replay to where we were (it snapshots on its way)
        step, own, states = self.snapshot
        out = dict(own)
        for i, state in enumerate(states):
            out.update({source_prefix(i) + k: v for k, v in state.items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> int:
        """Set the whole run to ``tensors`` (a resume); returns the step it is at."""
        self.selector.load_state_tensors(tensors)
        parts = [{k[len(source_prefix(i)):]: v for k, v in tensors.items() if k.startswith(source_prefix(i))}
                 for i in range(len(self.generators))]
        self.snapshot = (self.selector.steps_done, self.selector.state_tensors(), parts)
        self._pending = []
        for attempt in range(3):
            try:
                self._restore_snapshot()
                self._take_snapshot()  # writes every actor's state file at this step
                return self.selector.steps_done
            except _RECOVERABLE as e:
                self.recoveries += 1
                self._wait_for_actors(e)
        raise RuntimeError("could not load the checkpoint into the generator actors (they keep failing)")

    # ------------------------------------------------------------ one step

    def _step(self) -> dict[str, Any]:
        t = self.selector.steps_done + 1
        u = self.selector.draw_latent()
        grads, self._pending = self._pending, []
        if grads:
            refs = [g.apply_and_sample.remote(grad, u, t) for g, grad in zip(self.generators, grads)]
        else:
            refs = [g.sample.remote(u, t) for g in self.generators]
        t0 = time.perf_counter()
        samples = ray.get(refs, timeout=self.step_timeout_s)
        self.wait_s += time.perf_counter() - t0
        behind = [i for i, (done, _) in enumerate(samples) if done != t - 1]
        if behind:
            raise StaleActorError(f"generator actors {behind} are not at step {t - 1}")
        t0 = time.perf_counter()
        result = self.selector.step([x for _, x in samples])
        self.selector_s += time.perf_counter() - t0
        self._pending = [grad.cpu() for grad in result.grads]
        return step_record(t, self.cfg, result, self.selector.shares())

    def _flush(self) -> None:
        """Send the last step's dL/dx_i alone; afterwards every actor is at the coordinator's step."""
        grads, self._pending = self._pending, []
        t = self.selector.steps_done
        if not grads:
            return
        acks = ray.get([g.apply_gradient.remote(grad, t) for g, grad in zip(self.generators, grads)],
                       timeout=self.step_timeout_s)
        if any(a != t for a in acks):
            raise StaleActorError(f"a generator actor did not apply step {t}")

    # ------------------------------------------------------------ snapshots and recovery

    def _take_snapshot(self) -> None:
        self._flush()
        states = ray.get([g.save.remote() for g in self.generators], timeout=self.step_timeout_s)
        step = self.selector.steps_done
        if any(int(s["steps_done"]) != step for s in states):
            raise StaleActorError(f"a generator actor's saved state is not at step {step}")
        self.snapshot = (step, self.selector.state_tensors(), states)

    def _wait_for_actors(self, error: Exception) -> list[dict[str, Any]]:
        """Every actor's info, waiting (up to ``restart_timeout_s``) for Ray to restart dead ones."""
        deadline = time.monotonic() + self.restart_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"a generator actor did not come back within {self.restart_timeout_s:.0f} s "
                                   f"after {type(error).__name__}: {error}")
            try:
                return ray.get([g.info.remote() for g in self.generators], timeout=remaining)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.2)

    def _restore_snapshot(self, infos: list[dict[str, Any]] | None = None) -> None:
        """Roll the critic/selector, and every actor whose state moved on, back to the snapshot.

        Without ``infos`` every actor is loaded; with them, an actor already at the snapshot
        (a restarted one that reloaded its file) is left as it is.
        """
        step, own, states = self.snapshot
        self.selector.load_state_tensors(own)
        infos = infos or [None] * len(states)
        loads = [g.load_state.remote(s) for g, s, info in zip(self.generators, states, infos)
                 if info is None or info["steps_done"] != step or info["dirty"]]
        ray.get(loads, timeout=self.step_timeout_s)

    def _recover(self, error: Exception) -> None:
        """Wait for restarted actors, then roll the run back to the last snapshot and carry on."""
        if self.snapshot is None:
            raise RuntimeError(f"a generator actor failed before the first snapshot: {error}")
        self._pending = []
        for attempt in range(3):
            self.recoveries += 1
            infos = self._wait_for_actors(error)
            try:
                self._restore_snapshot(infos)
                return
            except _RECOVERABLE as e:
                error = e
        raise RuntimeError(f"generator actors keep failing while being restored: {error}")
