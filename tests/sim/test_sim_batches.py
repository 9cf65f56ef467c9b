"""The Message Batches API through the real SDK's ``client.messages.batches``.

Time never passes by sleeping: with ``time_scale=0`` a batch has ended by the first
retrieve after its creation; where a delay matters, the server's clock is a
:class:`FakeClock` the test moves by hand.
"""

from __future__ import annotations

from typing import Any

import anthropic
import anyio
import pytest

from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

INSTANT = SimConfig(time_scale=0)
HAIKU, SONNET = "claude-haiku-5-5", "claude-sonnet-5-5"
LONG_SYSTEM = "You are a careful analyst who writes plainly. " * 120  # ~1,400 tokens


class FakeClock:
    """Seconds since the epoch, moved only by the test."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ask(question: str, model: str = HAIKU, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


def requests(count: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"q-{i}", "params": ask(f"Name river {i}.")} for i in range(count)]


async def results_of(client: anthropic.AsyncAnthropic, batch_id: str) -> dict[str, Any]:
    return {
        line.custom_id: line.result
        async for line in await client.messages.batches.results(batch_id)
    }


def counts(batch: Any) -> dict[str, int]:
    return batch.request_counts.model_dump()


async def test_batch_answers_equal_messages_answers(make_client) -> None:
    params = {
        "plain": ask("Summarise the water cycle."),
        "sections": ask("Compare two rivers.\nRequired sections: Overview, Risks", SONNET),
        "structured": ask(
            "Pick a colour.",
            output_config={
                "format": {
                    "type": "json_schema",
                    "schema": {
                        "type": "object",
                        "properties": {"colour": {"type": "string"}},
                        "required": ["colour"],
                    },
                }
            },
        ),
        "tools": ask(
            "Find facts about deltas.",
            tools=[
                {
                    "name": "search",
                    "description": "Search the corpus.",
                    "input_schema": {
                        "type": "object",
                        "properties": {"query": {"type": "string"}},
                        "required": ["query"],
                    },
                }
            ],
        ),
    }
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            direct = {key: await client.messages.create(**value) for key, value in params.items()}
            batch = await client.messages.batches.create(
                requests=[{"custom_id": key, "params": value} for key, value in params.items()]
            )
            assert batch.type == "message_batch"
            assert batch.id.startswith("msgbatch_")
            assert batch.processing_status == "in_progress"  # even with time_scale=0
            assert counts(batch) == {
                "processing": 4, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0
            }  # fmt: skip
            assert batch.results_url is None
            assert batch.ended_at is None
            ended = await client.messages.batches.retrieve(batch.id)
            results = await results_of(client, batch.id)
    assert ended.processing_status == "ended"
    assert counts(ended)["succeeded"] == 4
    assert counts(ended)["processing"] == 0
    assert ended.ended_at is not None
    assert ended.created_at == batch.created_at
    assert ended.results_url == f"{server.base_url}/v1/messages/batches/{batch.id}/results"
    assert set(results) == set(params)
    for key, message in direct.items():
        result = results[key]
        assert result.type == "succeeded"
        got = result.message
        assert got.content == message.content
        assert (got.stop_reason, got.model) == (message.stop_reason, message.model)
        assert got.usage.model_dump(exclude={"service_tier"}) == message.usage.model_dump(
            exclude={"service_tier"}
        )
        assert (got.usage.service_tier, message.usage.service_tier) == ("batch", "standard")
    assert direct["tools"].stop_reason == "tool_use"
    entries = [r for r in server.requests if r.custom_id is not None]
    assert {r.custom_id for r in entries} == set(params)
    assert all(r.batch_id == batch.id and r.status == 200 for r in entries)
    assert {r.kind for r in entries} >= {"task", "tool_turn"}
    actions = [r.notes.get("action") for r in server.requests if r.kind == "batch"]
    assert actions == ["create", "retrieve", "retrieve", "results"]


async def test_batch_requests_read_and_write_the_prompt_cache(make_client) -> None:
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            first = await client.messages.create(**ask("What is a delta?", SONNET, system=system))
            batch = await client.messages.batches.create(
                requests=[
                    {"custom_id": "a", "params": ask("What is a fjord?", SONNET, system=system)},
                    {"custom_id": "b", "params": ask("What is a fjord?", HAIKU, system=system)},
                ]
            )
            await client.messages.batches.retrieve(batch.id)
            results = await results_of(client, batch.id)
    assert first.usage.cache_creation_input_tokens > 0
    read = results["a"].message.usage
    assert read.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert read.cache_creation_input_tokens == 0
    other_model = results["b"].message.usage  # the cache is per model
    assert other_model.cache_creation_input_tokens == first.usage.cache_creation_input_tokens
    assert other_model.cache_read_input_tokens == 0


async def test_results_wait_for_the_delay_then_cancel_cancels_the_rest(make_client) -> None:
    clock = FakeClock()
    config = SimConfig(time_scale=1.0, batch_delay_s=10.0)  # requests end 5..15 s in
    with anyio.fail_after(10):
        async with serve(config, clock=clock) as server, make_client(server) as client:
            batch = await client.messages.batches.create(requests=requests(20))
            clock.now += 4.0
            early = await client.messages.batches.retrieve(batch.id)
            with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
                await client.messages.batches.results(batch.id)
            with pytest.raises(anthropic.BadRequestError, match="not finished processing"):
                await client.get(f"/v1/messages/batches/{batch.id}/results", cast_to=object)
            with pytest.raises(anthropic.BadRequestError, match="cannot be deleted"):
                await client.messages.batches.delete(batch.id)
            clock.now += 6.0  # 10 s in: about half the requests have ended
            canceling = await client.messages.batches.cancel(batch.id)
            clock.now += 100.0
            ended = await client.messages.batches.retrieve(batch.id)
            again = await client.messages.batches.cancel(batch.id)  # ended: unchanged
            results = await results_of(client, batch.id)
    assert early.processing_status == "in_progress"
    assert counts(early)["processing"] == 20
    assert early.results_url is None
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert counts(canceling)["processing"] == 20
    assert ended.processing_status == "ended"
    assert ended.ended_at == canceling.cancel_initiated_at
    tally = counts(ended)
    assert tally["processing"] == 0
    assert tally["canceled"] > 0
    assert tally["succeeded"] > 0
    assert tally["canceled"] + tally["succeeded"] == 20
    assert again.model_dump() == ended.model_dump()
    assert sum(r.type == "canceled" for r in results.values()) == tally["canceled"]
    answered = [r for r in server.requests if r.custom_id is not None]
    assert len(answered) == tally["succeeded"]  # canceled requests are never answered


async def test_a_batch_ends_after_its_time_scaled_delay_on_the_real_clock(make_client) -> None:
    config = SimConfig(time_scale=0.01, batch_delay_s=2.0)  # ends within 30 ms
    with anyio.fail_after(10):
        async with serve(config) as server, make_client(server) as client:
            batch = await client.messages.batches.create(requests=requests(3))
            while batch.processing_status != "ended":
                await anyio.sleep(0.005)
                batch = await client.messages.batches.retrieve(batch.id)
            results = await results_of(client, batch.id)
    assert counts(batch)["succeeded"] == 3
    assert [r.type for r in results.values()] == ["succeeded"] * 3


async def test_errored_entries_carry_the_messages_api_error(make_client) -> None:
    bad_roles = {
        "model": HAIKU,
        "max_tokens": 50,
        "messages": [{"role": "assistant", "content": "Hello."}],
    }
    config = SimConfig(time_scale=0, batch_error_rate=0.5)
    with anyio.fail_after(10):
        async with serve(config) as server, make_client(server) as client:
            with pytest.raises(anthropic.BadRequestError) as refused:
                await client.messages.create(**bad_roles)
            batch = await client.messages.batches.create(
                requests=[
                    *requests(20),
                    {"custom_id": "bad-roles", "params": bad_roles},
                    {"custom_id": "no-model", "params": ask("Hi.", "claude-nope")},
                    {"custom_id": "no-max", "params": {"model": HAIKU, "messages": []}},
                ]
            )
            ended = await client.messages.batches.retrieve(batch.id)
            results = await results_of(client, batch.id)
    invalid = results["bad-roles"]
    assert invalid.type == "errored"
    assert invalid.error.type == "error"
    assert invalid.error.error.type == "invalid_request_error"
    assert invalid.error.error.message == refused.value.body["error"]["message"]
    assert results["no-model"].error.error.type == "not_found_error"
    assert results["no-model"].error.error.message == "model: claude-nope"
    assert results["no-max"].error.error.message == "max_tokens: Field required"
    drawn = [results[f"q-{i}"] for i in range(20)]
    assert {r.error.error.type for r in drawn if r.type == "errored"} == {"api_error"}
    tally = counts(ended)
    assert 0 < tally["succeeded"] < 20
    assert tally["errored"] == 23 - tally["succeeded"]
    logged = {r.custom_id: r for r in server.requests if r.custom_id is not None}
    assert logged["bad-roles"].status == 400
    assert logged["no-model"].error_type == "not_found_error"


async def test_requests_past_the_expiry_are_expired(make_client) -> None:
    config = SimConfig(time_scale=0, batch_delay_s=10.0, batch_expiry_s=10.0)
    with anyio.fail_after(10):
        async with serve(config) as server, make_client(server) as client:
            batch = await client.messages.batches.create(requests=requests(20))
            ended = await client.messages.batches.retrieve(batch.id)
            results = await results_of(client, batch.id)
    tally = counts(ended)
    assert tally["expired"] > 0
    assert tally["succeeded"] > 0
    assert tally["expired"] + tally["succeeded"] == 20
    assert sum(r.type == "expired" for r in results.values()) == tally["expired"]
    assert ended.expires_at == ended.created_at  # 10 simulated seconds, time_scale 0
    answered = [r for r in server.requests if r.custom_id is not None]
    assert len(answered) == tally["succeeded"]


@pytest.mark.parametrize(
    ("batch_requests", "message"),
    [
        (
            [{"custom_id": "a", "params": ask("x")}, {"custom_id": "a", "params": ask("y")}],
            "requests.1.custom_id: Duplicate custom_id 'a'",
        ),
        (
            [{"custom_id": "has space", "params": ask("x")}],
            "requests.0.custom_id: String should match pattern",
        ),
        ([{"custom_id": "x" * 65, "params": ask("x")}], "requests.0.custom_id"),
        ([], "requests: List should have at least 1 item"),
        ([{"custom_id": "a", "params": "hello"}], "requests.0.params: Input should be"),
        ([{"custom_id": "a"}], "requests.0.params: Field required"),
    ],
)
async def test_invalid_batches_are_refused_with_400(
    make_client, batch_requests: list[dict[str, Any]], message: str
) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            with pytest.raises(anthropic.BadRequestError) as refused:
                await client.messages.batches.create(requests=batch_requests)  # type: ignore[arg-type]
            listed = await client.messages.batches.list()
    assert refused.value.status_code == 400
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    assert message in refused.value.body["error"]["message"]
    assert listed.data == []  # nothing was created
    assert server.requests[0].status == 400


async def test_too_many_requests_and_too_large_bodies(make_client) -> None:
    config = SimConfig(time_scale=0, max_body_bytes=2_000, batch_max_bytes=20_000)
    with anyio.fail_after(20):
        async with serve(config) as server, make_client(server) as client:
            big = ask("Name a river. " + "x" * 2_500)
            with pytest.raises(anthropic.ContentTooLargeError):
                await client.messages.create(**big)  # over the Messages API's limit...
            batch = await client.messages.batches.create(  # ...but a batch may carry it
                requests=[{"custom_id": "big", "params": big}]
            )
            with pytest.raises(anthropic.ContentTooLargeError) as too_large:
                await client.messages.batches.create(
                    requests=[{"custom_id": f"b{i}", "params": big} for i in range(10)]
                )
    assert batch.processing_status == "in_progress"
    assert too_large.value.body["error"]["type"] == "request_too_large"
    del server


async def test_at_most_100000_requests(make_client) -> None:
    with anyio.fail_after(30):
        async with serve(INSTANT) as server, make_client(server, timeout=30.0) as client:
            with pytest.raises(anthropic.BadRequestError, match="at most 100000 items"):
                await client.messages.batches.create(
                    requests=[{"custom_id": f"r{i}", "params": {}} for i in range(100_001)]
                )
    assert server.requests[0].status == 400


async def test_unknown_batches_are_404(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            for call in (
                client.messages.batches.retrieve,
                client.messages.batches.cancel,
                client.messages.batches.delete,
            ):
                with pytest.raises(anthropic.NotFoundError) as missing:
                    await call("msgbatch_nope")
                assert missing.value.body["error"]["type"] == "not_found_error"
                assert missing.value.body["error"]["message"] == "message_batch: msgbatch_nope"
    assert [r.status for r in server.requests] == [404, 404, 404]


async def test_delete_once_ended(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            kept = await client.messages.batches.create(requests=requests(1))
            batch = await client.messages.batches.create(requests=requests(2))
            deleted = await client.messages.batches.delete(batch.id)
            with pytest.raises(anthropic.NotFoundError):
                await client.messages.batches.retrieve(batch.id)
            listed = [b.id async for b in client.messages.batches.list()]
    assert deleted.model_dump() == {"id": batch.id, "type": "message_batch_deleted"}
    assert listed == [kept.id]
    del server


async def test_list_pages_newest_first(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            created = [
                (await client.messages.batches.create(requests=requests(1))).id for _ in range(5)
            ]
            newest_first = created[::-1]
            page = await client.messages.batches.list(limit=2)
            every = [b.id async for b in client.messages.batches.list(limit=2)]
            after = await client.messages.batches.list(after_id=newest_first[3], limit=2)
            before = await client.messages.batches.list(before_id=newest_first[3], limit=2)
            all_before = await client.messages.batches.list(before_id=newest_first[1])
            default = await client.messages.batches.list()
            backwards = [
                b.id async for b in client.messages.batches.list(before_id=newest_first[4], limit=2)
            ]
            with pytest.raises(anthropic.BadRequestError, match="less than or equal to 1000"):
                await client.messages.batches.list(limit=1001)
    assert [b.id for b in page.data] == newest_first[:2]
    assert (page.has_more, page.first_id, page.last_id) == (True, *newest_first[:2])
    assert every == newest_first
    assert [b.id for b in after.data] == newest_first[4:]
    assert after.has_more is False
    assert [b.id for b in before.data] == newest_first[1:3]
    assert before.has_more is True
    assert [b.id for b in all_before.data] == newest_first[:1]
    assert all_before.has_more is False
    assert [b.id for b in default.data] == newest_first
    assert backwards == [*newest_first[2:4], *newest_first[:2]]  # pages towards the newest
    assert all(b.processing_status == "ended" for b in default.data)
    del server


async def test_batches_are_bounded_oldest_forgotten(make_client) -> None:
    config = SimConfig(time_scale=0, max_batches=3)
    with anyio.fail_after(10):
        async with serve(config) as server, make_client(server) as client:
            created = [
                (await client.messages.batches.create(requests=requests(1))).id for _ in range(5)
            ]
            listed = [b.id async for b in client.messages.batches.list()]
            with pytest.raises(anthropic.NotFoundError):
                await client.messages.batches.retrieve(created[0])
    assert listed == created[:1:-1]
    del server
