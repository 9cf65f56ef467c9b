"""The brain over HTTP: determinism, difficulty and flaws, judges, tool use, plans."""

from __future__ import annotations

import json
import re

import anyio
import pytest
from pydantic import BaseModel, ConfigDict, Field

from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

INSTANT = SimConfig(time_scale=0)
HARD = "Compare three designs for a bike-share rebalancing fleet. [difficulty=3]"
SECTIONS = "Required sections: Summary, Options, Risks"


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def answer(client, model: str, text: str, **extra) -> str:
    message = await client.messages.create(
        model=model, max_tokens=2000, messages=user(text), **extra
    )
    return message.content[0].text


def headings(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, re.MULTILINE)


async def test_same_seed_same_outputs_different_seed_differs(make_client) -> None:
    prompts = ["Describe a coral reef.", f"{HARD}\n{SECTIONS}", "List uses of copper."]

    async def run(seed: int) -> list[str]:
        async with (
            serve(SimConfig(time_scale=0, seed=seed)) as server,
            make_client(server) as client,
        ):
            return [await answer(client, "claude-sonnet-5-5", p) for p in prompts]

    with anyio.fail_after(10):
        first, again, other = await run(7), await run(7), await run(8)
    assert first == again
    assert first != other


async def test_required_sections_become_markdown_headings(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            text = await answer(client, "claude-opus-5-5", f"Plan a garden. {SECTIONS}")
    assert headings(text) == ["Summary", "Options", "Risks"]


async def test_hard_task_is_flawed_on_haiku_and_sound_on_opus(make_client) -> None:
    prompt = f"{HARD}\n{SECTIONS}"
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            weak = await answer(client, "claude-haiku-5-5", prompt)
            strong = await answer(client, "claude-opus-5-5", prompt)
    haiku, opus = server.requests
    assert (haiku.difficulty, haiku.capability, haiku.flawed) == (3, 1, True)
    assert haiku.flaw == "missing_section"
    assert len(headings(weak)) == 2
    assert (opus.difficulty, opus.capability, opus.flawed) == (3, 3, False)
    assert opus.flaw is None
    assert headings(strong) == ["Summary", "Options", "Risks"]
    assert haiku.task_hash == opus.task_hash


@pytest.mark.parametrize(
    ("level", "flawed_on"), [(1, set()), (2, {"haiku"}), (3, {"haiku", "sonnet"})]
)
async def test_difficulty_hook_against_each_tier(make_client, level, flawed_on) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            for tier in ("haiku", "sonnet", "opus"):
                await answer(client, f"claude-{tier}-5-5", f"Explain tides. [difficulty={level}]")
    flawed = {r.model.split("-")[1] for r in server.requests if r.flawed}
    assert flawed == flawed_on


async def test_feedback_about_a_failed_attempt_does_not_help(make_client) -> None:
    prompt = f"{HARD}\n{SECTIONS}"
    retry = (
        f"{prompt}\n\n<previous_attempt tier='haiku'>\n...\n</previous_attempt>\n"
        "That attempt was rejected: omits a section\nGive a corrected, complete answer."
    )
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            await answer(client, "claude-haiku-5-5", prompt)
            await answer(client, "claude-haiku-5-5", retry)
            await answer(client, "claude-opus-5-5", retry)
    first, same_tier, escalated = server.requests
    assert first.task_hash == same_tier.task_hash == escalated.task_hash
    assert (first.flawed, same_tier.flawed, escalated.flawed) == (True, True, False)


class Finding(BaseModel):
    model_config = ConfigDict(title="Finding")

    headline: str
    evidence: list[str]
    confidence: float = Field(ge=0, le=1)


async def test_structured_output_flaw_is_schema_valid_but_empty(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            parsed = await client.messages.parse(
                model="claude-haiku-5-5",
                max_tokens=1000,
                messages=user("Synthesize what is known about urban heat islands. [difficulty=3]"),
                output_format=Finding,
            )
    finding = parsed.parsed_output
    assert finding is not None
    record = server.requests[0]
    assert record.flaw == "empty_field"
    assert finding.headline == "" or finding.evidence == []


async def test_subtle_flaws_keep_every_section(make_client) -> None:
    config = SimConfig(time_scale=0, subtle_flaw_rate=1.0)
    with anyio.fail_after(10):
        async with serve(config) as server, make_client(server) as client:
            text = await answer(client, "claude-haiku-5-5", f"{HARD}\n{SECTIONS}")
    record = server.requests[0]
    assert record.flawed
    assert record.subtle
    assert record.flaw == "contradiction"
    assert headings(text) == ["Summary", "Options", "Risks"]
    assert "no bearing" in text


class JudgeVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid", title="JudgeVerdict")

    passed: bool
    reason: str
    score: float


def judge_prompt(task: str, text: str) -> str:
    return (
        f"Task:\n{task}\n\nCriteria:\nComplete and correct.\n\n"
        f"Answer to judge:\n<answer>\n{text}\n</answer>"
    )


async def test_judges_catch_flaws_more_often_when_stronger(make_client) -> None:
    config = SimConfig(time_scale=0, judge_false_reject=(0.0, 0.0, 0.0), subtle_flaw_rate=0)
    caught = {"claude-haiku-5-5": 0, "claude-opus-5-5": 0}
    trials = 40
    with anyio.fail_after(20):
        async with serve(config) as server, make_client(server) as client:
            for index in range(trials):
                task = f"Compare option {index} for storing grain. [difficulty=3]\n{SECTIONS}"
                flawed = await answer(client, "claude-haiku-5-5", task)
                for judge in caught:
                    parsed = await client.messages.parse(
                        model=judge,
                        max_tokens=500,
                        system="You are a strict verifier.",
                        messages=user(judge_prompt(task, flawed)),
                        output_format=JudgeVerdict,
                    )
                    verdict = parsed.parsed_output
                    assert verdict is not None
                    if not verdict.passed:
                        caught[judge] += 1
                        assert "omits the required section" in verdict.reason
                        assert verdict.score < 0.5
    assert caught["claude-opus-5-5"] > caught["claude-haiku-5-5"]
    assert caught["claude-opus-5-5"] >= trials * 0.85
    assert trials * 0.35 <= caught["claude-haiku-5-5"] <= trials * 0.85
    judged = [r for r in server.requests if r.kind == "judge"]
    assert all(r.notes["answer_flaw"] == "missing_section" for r in judged)


async def test_judge_passes_a_sound_answer(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(INSTANT) as server, make_client(server) as client:
            task = f"Plan a garden. {SECTIONS}"
            good = await answer(client, "claude-opus-5-5", task)
            parsed = await client.messages.parse(
                model="claude-opus-5-5",
                max_tokens=500,
                messages=user(judge_prompt(task, good)),
                output_format=JudgeVerdict,
            )
    assert parsed.parsed_output is not None
    assert parsed.parsed_output.passed
    assert parsed.parsed_output.score > 0.5
    assert server.requests[-1].kind == "judge"


async def test_judge_sees_a_missing_section_it_did_not_write(make_client) -> None:
    with anyio.fail_after(10):
        async with (
            serve(SimConfig(time_scale=0, judge_detection=(1.0, 1.0, 1.0))) as server,
            make_client(server) as client,
        ):
            text = await answer(
                client,
                "claude-opus-5-5",
                judge_prompt(f"Plan a garden. {SECTIONS}", "## Summary\n\nAll good."),
                system="Judge the answer. Reply with the verdict as JSON.",
            )
    verdict = json.loads(text)
    assert verdict["passed"] is False
    assert "Options" in verdict["reason"]
