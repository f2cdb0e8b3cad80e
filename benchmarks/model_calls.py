"""A turn's model calls and nothing else: the baselines Switchboard's numbers are compared with.

The same two SDK calls a turn makes (triage ``create`` with the forced tool, and the streamed answer with the
shipped policy as a cached system prompt, run concurrently as the pipeline runs them) against the same fake:

- :func:`ceiling`: back to back at a fixed concurrency, zero-latency fake: the turns/s the SDK alone can
  drive on this machine (the saturation phase's ceiling).
- :func:`overhead_in_process`: in the overhead phase's pattern (N conversations, 10 s between turns, starts
  spread), in a process of its own like a server: per turn, the time around the model requests that the SDK
  and the event loop take by themselves. Switchboard's overhead minus this is what Switchboard adds.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

import anthropic

from benchmarks import harness as h

WARM_UP_TURNS = 8  # as the server's warm-up (4 conversations x 2 turns): first calls are slow
POLICY = Path(__file__).resolve().parents[1] / "support" / "policy" / "sample_policy.md"
TRIAGE_TOOL: Any = {
    "name": "record_triage",
    "description": "Record the triage verdict.",
    "input_schema": {"type": "object", "properties": {k: {} for k in h.TRIAGE_VERDICT}},
}


class ModelCalls:
    """One SDK client making a turn's two calls for a tagged message."""

    def __init__(self, base_url: str) -> None:
        self.client = anthropic.AsyncAnthropic(base_url=base_url, api_key="bench", max_retries=0)
        self.policy = POLICY.read_text()

    async def triage(self, text: str) -> None:
        await self.client.messages.create(
            model=h.TRIAGE_MODEL, max_tokens=400, tools=[TRIAGE_TOOL],
            tool_choice={"type": "tool", "name": "record_triage"},
            messages=[{"role": "user", "content": text}],
        )  # fmt: skip

    async def answer(self, text: str) -> None:
        async with self.client.messages.stream(
            model=h.ANSWER_MODEL, max_tokens=1024,
            system=[{"type": "text", "text": self.policy, "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": text}],
        ) as stream:  # fmt: skip
            async for _ in stream.text_stream:
                pass

    async def turn(self, text: str) -> None:
        await asyncio.gather(self.triage(text), self.answer(text))

    async def aclose(self) -> None:
        await self.client.close()


async def ceiling(base_url: str, turns: int, concurrency: int) -> dict[str, Any]:
    """``turns`` turns' model calls, ``concurrency`` at a time, as fast as they go."""
    calls = ModelCalls(base_url)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(turns):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await calls.turn(h.tagged(h.question(i), f"c{i}"))

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await calls.aclose()
    elapsed = time.monotonic() - started
    return {"turns": turns, "elapsed_s": elapsed, "turns_per_s": turns / elapsed}


async def paced(base_url: str, conversations: int, turns: int, think_s: float) -> list[h.TurnResult]:
    """The overhead phase's pattern with only the model calls, after a warm-up: per turn, ``sent`` is taken
    before the calls start and ``done`` when the answer's stream has ended (where the pipeline would persist
    the reply)."""
    calls = ModelCalls(base_url)
    results: list[h.TurnResult] = []
    # A fresh process's first calls pay for lazy imports and new connections: not per turn.
    await asyncio.gather(*(calls.turn(h.tagged(h.question(i), f"mwarm-{i}")) for i in range(WARM_UP_TURNS)))

    async def conversation(i: int) -> None:
        await asyncio.sleep(think_s * (i / max(1, conversations)))
        for t in range(turns):
            if t and think_s:
                await asyncio.sleep(think_s)
            tag = f"m{conversations}-{i}.{t}"
            result = h.TurnResult(tag=tag, sent=time.monotonic())
            try:
                await calls.turn(h.tagged(h.question(t), tag))
                result.done = time.monotonic()
            except anthropic.APIError as exc:
                result.error = repr(exc)
            results.append(result)

    try:
        await asyncio.gather(*(conversation(i) for i in range(conversations)))
    finally:
        await calls.aclose()
    return results


def _paced_main(conn: Any, base_url: str, conversations: int, turns: int, think_s: float) -> None:
    try:
        conn.send((True, asyncio.run(paced(base_url, conversations, turns, think_s))))
    except Exception as exc:  # reported to the parent, which raises it
        conn.send((False, repr(exc)))
    finally:
        conn.close()


async def overhead_in_process(
    base_url: str, conversations: int, turns: int, think_s: float
) -> list[h.TurnResult]:
    """:func:`paced` in a fresh process of its own (as a server is): the customer driver's event loop and GIL
    must not show up in its timings."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_paced_main, args=(child, base_url, conversations, turns, think_s), name="model-calls-only"
    )
    proc.start()
    child.close()
    try:
        ok, value = await asyncio.to_thread(parent.recv)
    finally:
        await asyncio.to_thread(proc.join, 30)
        parent.close()
    if not ok:
        raise RuntimeError(f"model-calls-only process: {value}")
    results: list[h.TurnResult] = value
    return results
