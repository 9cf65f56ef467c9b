"""Typed tools that models may call.

* :mod:`orchestrator.tools.registry`: :func:`tool` turns a typed Python function into a
  :class:`FunctionTool` (an :class:`orchestrator.tool.Tool`); :class:`ToolRegistry` holds
  tools by name.
* :mod:`orchestrator.tools.corpus`: :class:`Corpus` and :func:`corpus_tools`, the
  ``search_corpus`` and ``read_passage`` research tools over a folder of documents (or
  CPython's own docs).
* :mod:`orchestrator.tools.mcp`: :class:`MCPServer`, an MCP server (stdio or streamable
  HTTP, the official ``mcp`` SDK) whose tools join the engine's while a run has it open;
  :mod:`orchestrator.tools.mcp_config`: :func:`load_mcp_config`, servers from an
  ``mcpServers`` JSON file.
* :mod:`orchestrator.tools.errors`: what tools and the registry raise.
"""

from orchestrator.tools.corpus import Corpus, Passage, SearchHit, SkippedFile, corpus_tools
from orchestrator.tools.errors import (
    MCPServerError,
    MCPToolError,
    PassageNotFoundError,
    PassagePathError,
    ToolArgumentError,
    ToolDefinitionError,
    ToolError,
    ToolTimeoutError,
    UnknownToolError,
)
from orchestrator.tools.mcp import MCPServer, MCPTool
from orchestrator.tools.mcp_config import load_mcp_config, parse_mcp_config
from orchestrator.tools.registry import FunctionTool, ToolRegistry, to_text, tool

__all__ = [
    "Corpus",
    "FunctionTool",
    "MCPServer",
    "MCPServerError",
    "MCPTool",
    "MCPToolError",
    "Passage",
    "PassageNotFoundError",
    "PassagePathError",
    "SearchHit",
    "SkippedFile",
    "ToolArgumentError",
    "ToolDefinitionError",
    "ToolError",
    "ToolRegistry",
    "ToolTimeoutError",
    "UnknownToolError",
    "corpus_tools",
    "load_mcp_config",
    "parse_mcp_config",
    "to_text",
    "tool",
]
