"""Per-app state shared by every route: the model, the batcher, limits, readiness; and response rendering."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ClinBertError, OverloadedError
from ..model import ClinicalBert
from ..tasks import EmbedOptions, MaskOptions, Prepared
from .batcher import Batcher
from .config import ServeConfig
from .errors import QueueFullError
from .inputs import INLINE_TOKENIZE_CHARS, check_request_texts
from .metrics import Metrics

log = logging.getLogger("clinbert_onnx.serve")
#: Responses with more floats than this are serialized on a worker thread, row by row.
INLINE_FLOATS = 16384


class Runtime:
    """Per-app state: model, config, metrics, batcher, readiness, inference requests in flight."""

    def __init__(self, model: ClinicalBert, config: ServeConfig) -> None:
        self.model = model
        self.config = config
        self.metrics = Metrics()
        self.max_batch_tokens = config.max_batch_tokens or model.token_budget
        self.batcher = Batcher(
            model,
            self.metrics,
            max_batch_tokens=self.max_batch_tokens,
            max_wait_ms=config.max_wait_ms,
            max_queue=config.max_queue,
        )
        self.ready = False
        self.name = config.served_model_name or model.name
        self.in_flight = 0

    async def run(self, task: str, options: Any, raw: str | list[str]) -> tuple[Any, Prepared]:
        """Check the request's limits, prepare it (off the event loop when large), queue its windows. At most
        ``max_concurrent_requests`` run this at once (the event loop is one thread: a plain counter is exact)."""
        direction = getattr(options, "truncation_direction", "right")
        texts = check_request_texts(raw, self.config, options.long_text, direction)
        if self.in_flight >= self.config.max_concurrent_requests:
            raise OverloadedError(
                f"Model is overloaded: {self.in_flight} requests in flight (max_concurrent_requests); retry later",
                self.batcher.retry_after(),
            )
        self.in_flight += 1
        try:
            if sum(len(t) for t in texts if isinstance(t, str)) <= INLINE_TOKENIZE_CHARS:
                prepared = self.model.prepare(texts, task, options)
            else:
                prepared = await asyncio.to_thread(self.model.prepare, texts, task, options)
            return await self.batcher.submit(prepared), prepared
        finally:
            self.in_flight -= 1

    async def warm_up(self) -> None:
        """A few inferences through the real path (short and window-long texts) before /ready says yes."""
        try:
            if self.config.warmup:
                long = " ".join(["patient"] * (self.model.max_length - 8))
                for texts in (["patient stable"], [long, "patient stable"]):
                    await self.run("embed", EmbedOptions(long_text="truncate"), texts)
                if self.model.has_mlm_head:
                    mask = self.model.bundle.tokenizer.mask_token
                    await self.run(
                        "fill-mask", MaskOptions(top_k=1, long_text="truncate"), f"the patient has {mask} pain."
                    )
        except QueueFullError:
            pass  # traffic got there first: the model is evidently loaded and running
        except ClinBertError as exc:
            log.error("warm-up failed, staying not ready: %s", exc)
            return
        self.ready = True
        self.metrics.ready.set(1)
        log.info("model %s ready (%s, %s)", self.name, self.model.variant, self.model.device)


# ------------------------------------------------------------------------------------------------- rendering
def _rows(vectors: np.ndarray, encoding: str) -> list[str]:
    if encoding == "base64":
        return ['"' + base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") + '"' for v in vectors]
    return [json.dumps(v.tolist()) for v in vectors]


def render_openai(vectors: np.ndarray, name: str, prompt_tokens: int, encoding: str) -> bytes:
    items = [
        f'{{"object":"embedding","index":{i},"embedding":{row}}}' for i, row in enumerate(_rows(vectors, encoding))
    ]
    usage = f'{{"prompt_tokens":{prompt_tokens},"total_tokens":{prompt_tokens}}}'
    return f'{{"object":"list","data":[{",".join(items)}],"model":{json.dumps(name)},"usage":{usage}}}'.encode()


def render_vectors(vectors: np.ndarray | list[np.ndarray]) -> bytes:
    """``[[floats]]`` for a matrix; ``[[[floats]]]`` for a list of matrices (token vectors per text)."""
    return ("[" + ",".join(json.dumps(v.tolist()) for v in vectors) + "]").encode()


async def render(fn: Callable[..., bytes], floats: int, *args: Any) -> bytes:
    """Small bodies inline; large ones on a thread (row by row, so the event loop keeps getting the GIL)."""
    if floats <= INLINE_FLOATS:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def option(body: Any, name: str) -> Any:
    """A request option: the top-level field if the client set it, else ``parameters.<name>`` (the Hugging
    Face Inference API's place for it) if set there, else the field's default."""
    if name not in body.model_fields_set and body.parameters is not None:
        value = getattr(body.parameters, name, None)
        if value is not None:
            return value
    return getattr(body, name)
