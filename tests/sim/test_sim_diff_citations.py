"""The brain's diff-grounded citations: answers about a diff cite lines it really has."""

from __future__ import annotations

import json
import random

import anyio
import pytest

from orchestrator_sim import SimConfig, serve
from orchestrator_sim.diffs import diff_anchors, misplace_one_citation

pytestmark = pytest.mark.anyio

DIFF = """\
diff --git a/pkg/rates.py b/pkg/rates.py
index 1111111..2222222 100644
--- a/pkg/rates.py
+++ b/pkg/rates.py
@@ -10,2 +10,4 @@ RATES = {}
 def rate(region):
-    return RATES[region]
+    if region not in RATES:
+        raise KeyError(region)
+    return RATES[region]
"""

SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "file": {"type": "string"},
                    "line": {"type": "integer"},
                    "quote": {"type": "string"},
                    "explanation": {"type": "string"},
                },
                "required": ["file", "line", "quote", "explanation"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["summary", "findings"],
    "additionalProperties": False,
}

NEW_SIDE = {10: "def rate(region):", 11: "    if region not in RATES:"}
NEW_SIDE |= {12: "        raise KeyError(region)", 13: "    return RATES[region]"}


def test_anchors_are_the_new_side_of_the_diff_and_ignore_other_text() -> None:
    anchors = diff_anchors(f"Review this.\n```diff\n{DIFF}```\nThanks.")
    assert {(a.line, a.text) for a in anchors} == set(NEW_SIDE.items())
    assert [a.line for a in anchors if a.added] == [11, 12, 13]
    assert {a.file for a in anchors} == {"pkg/rates.py"}
    assert diff_anchors("No diff here, only @@ and +++ signs.") == []
    assert diff_anchors("cut short:\n--- a/x\n+++ b/x\n@@ -1,5 +1,5 @@\n x\n") == []
    assert diff_anchors(f"<previous_attempt tier='haiku'>\n{DIFF}</previous_attempt>") == []


def test_misplacing_needs_a_citation() -> None:
    anchors = diff_anchors(DIFF)
    assert misplace_one_citation({"summary": "x"}, anchors, random.Random(0)) is None
    cited = {"findings": [{"file": "pkg/rates.py", "line": 12}]}
    detail = misplace_one_citation(cited, anchors, random.Random(0))
    assert detail is not None
    assert cited["findings"][0]["line"] not in NEW_SIDE


async def test_sound_answers_cite_added_lines_and_flawed_ones_a_line_off_the_diff(
    make_client,
) -> None:
    prompt = f"Review this change for bugs. [difficulty=3]\n```diff\n{DIFF}```"

    async def ask(client, model: str) -> dict:
        message = await client.messages.create(
            model=model,
            max_tokens=2000,
            messages=[{"role": "user", "content": prompt}],
            output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
        )
        return json.loads(message.content[0].text)

    with anyio.fail_after(10):
        async with serve(SimConfig(time_scale=0)) as server, make_client(server) as client:
            sound = await ask(client, "claude-opus-5-5")
            flawed = await ask(client, "claude-haiku-5-5")
    assert len(sound["findings"]) == 2
    for finding in sound["findings"]:
        assert finding["file"] == "pkg/rates.py"
        assert finding["line"] in (11, 12, 13)  # added lines first
        assert finding["quote"] == NEW_SIDE[finding["line"]].strip()
    assert {f["line"] for f in sound["findings"]} != {sound["findings"][0]["line"]}
    off = [f for f in flawed["findings"] if f["line"] not in NEW_SIDE]
    assert len(off) == 1
    opus, haiku = server.requests
    assert (opus.flawed, opus.flaw) == (False, None)
    assert (haiku.flawed, haiku.flaw) == (True, "wrong_location")
    assert f"pkg/rates.py:{off[0]['line']}" in haiku.flaw_detail
