"""The model adapter: what a model must offer for compsafe to evaluate it.

A task turns each example into requests of three kinds (``compsafe/types.py``):
``LoglikRequest`` (log P(continuation | context)), ``RollingRequest`` (log P(text), in
windows) and ``GenerationRequest`` (a continuation under a ``DecodingConfig`` and seed). An
adapter answers each kind with one method, and ``serve`` answers a mixed list, batching
each kind across the whole list, so a model sees a task's requests in as few calls as
possible. ``HFModel`` (``models/hf.py``) is the adapter of a Hugging Face causal LM; a test
or an API-backed model subclasses ``ModelAdapter`` and implements the kinds it serves:

    class ShortIsLikely(ModelAdapter):
        name = "short"
        identity = ModelIdentity.dense("short", "fp")
        def loglikelihood(self, requests, progress=False):
            return [LoglikResponse(-float(len(r.continuation)), False, 1) for r in requests]

This module imports no torch: the runner and the sweep planner read it on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence

from compsafe.identity import ModelIdentity
from compsafe.types import DecodingConfig, GenerationRequest, LoglikRequest, RollingRequest

__all__ = ["ModelAdapter", "request_groups"]


def request_groups(requests: Sequence) -> dict[tuple, list[int]]:
    """Indices of ``requests`` per adapter call ``serve`` makes: ``(type,)`` for scoring and
    rolling requests, ``(GenerationRequest, decoding, seed)`` for generations."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        if isinstance(r, GenerationRequest):  # batch per decoding config and seed
            key = (GenerationRequest, r.decoding or DecodingConfig(), r.seed)
        else:
            key = (type(r),)
        groups.setdefault(key, []).append(i)
    return groups


class ModelAdapter:
    """A model as the runner sees it: its ``identity`` (``compsafe.identity.ModelIdentity``,
    built once when it loaded), one method per request kind, and ``serve`` over all three.

    A kind an adapter does not implement fails with one line naming the adapter and the
    kind, before any other request of the list is computed.
    """

    name: str
    identity: ModelIdentity

    def loglikelihood(self, requests: Sequence[LoglikRequest], progress: bool = False) -> list:
        """``LoglikResponse`` per request, in order."""
        raise self._unserved("log-likelihood (LoglikRequest)")

    def rolling_loglikelihood(self, requests: Sequence[RollingRequest],
                              progress: bool = False) -> list:
        """``RollingResponse`` (log P(text) and its token count) per request, in order."""
        raise self._unserved("rolling log-likelihood (RollingRequest)")

    def generate(self, requests: Sequence[GenerationRequest], decoding: DecodingConfig,
                 seed: int, progress: bool = False) -> list[str]:
        """The continuation of each request under ``decoding``, reproducible from ``seed``
        and the request's sample key."""
        raise self._unserved("generation (GenerationRequest)")

    def render_chat(self, text: str, system: str | None = None) -> str:
        """``text`` as a user turn of the model's chat template, ready for the answer."""
        raise self._unserved("chat templates")

    def serve(self, requests: Sequence) -> list:
        """Responses to a mixed list of requests, in order, each kind batched across the
        whole list (generations per decoding config and seed)."""
        groups = request_groups(requests)
        unknown = sorted({key[0].__name__ for key in groups
                          if key[0] not in (LoglikRequest, RollingRequest, GenerationRequest)})
        if unknown:
            raise TypeError(f"model adapters serve LoglikRequest, RollingRequest and "
                            f"GenerationRequest, not {', '.join(unknown)}")
        out: list = [None] * len(requests)
        for key, idx in groups.items():
            batch = [requests[i] for i in idx]
            if key[0] is LoglikRequest:
                responses = self.loglikelihood(batch)
            elif key[0] is RollingRequest:
                responses = self.rolling_loglikelihood(batch)
            else:
                responses = self.generate(batch, key[1], key[2])
            if len(responses) != len(batch):
                raise ValueError(f"{type(self).__name__} answered {len(responses)} of "
                                 f"{len(batch)} {key[0].__name__}s")
            for i, response in zip(idx, responses, strict=True):
                out[i] = response
        return out

    def _unserved(self, kind: str) -> NotImplementedError:
        return NotImplementedError(f"model {getattr(self, 'name', type(self).__name__)!r} "
                                   f"({type(self).__name__}) does not serve {kind}")
