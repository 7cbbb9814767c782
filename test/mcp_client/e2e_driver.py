"""Drives an MCP server over stdio with the official MCP Python SDK (PyPI
`mcp`, pinned in scripts/requirements.txt) and prints what it answered.

    .venv/bin/python test/mcp_client/e2e_driver.py PLAN.json

PLAN.json says how to start the server and which tools to call:

    {"command": "mix", "args": ["thunderbolt.mcp", "--model-dir", "/tmp/m"],
     "cwd": "/work/main", "env": {"MIX_ENV": "test"}, "log": "/tmp/server.log",
     "calls": [{"key": "infer", "tool": "onnx_infer", "arguments": {...}}]}

The SDK does the whole client side: it spawns the server, runs the
initialize handshake, and validates every result against the schemas (a
tool's structuredContent against its outputSchema, too). This script only
records what came back, as one JSON object on stdout:

    {"initialize": {...}, "tools": [...], "ping": {...},
     "results": {"infer": <CallToolResult> | {"protocol_error": {...}}
                          | {"client_error": "..."}}}

The ExUnit test test/thunderbolt/mcp/official_client_test.exs makes the
assertions, so that they sit next to the Elixir reference values.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def call(session, tool, arguments):
    try:
        return dump(await session.call_tool(tool, arguments))
    except McpError as error:
        return {"protocol_error": {"code": error.error.code, "message": error.error.message}}
    except RuntimeError as error:
        # The SDK raises this when structured content breaks the output schema.
        return {"client_error": str(error)}


async def run(plan):
    env = dict(os.environ)
    env.update(plan.get("env", {}))
    server = StdioServerParameters(
        command=plan["command"], args=plan["args"], cwd=plan.get("cwd"), env=env
    )

    with open(plan["log"], "w") as log:
        async with stdio_client(server, errlog=log) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out = {
                    "initialize": dump(init),
                    "tools": [dump(tool) for tool in (await session.list_tools()).tools],
                    "ping": dump(await session.send_ping()),
                    "results": {},
                }

                for step in plan["calls"]:
                    out["results"][step["key"]] = await call(
                        session, step["tool"], step["arguments"]
                    )

                # The server must still answer after every failure above.
                out["ping_after"] = dump(await session.send_ping())
    return out


def main():
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    print(json.dumps(asyncio.run(run(plan))))


if __name__ == "__main__":
    main()
