"""Drives the codebase_mcp example with the official MCP Python SDK.

Usage: codebase_mcp_client.py http|sse URL DIRECTORY QUERY
Lists the tools and resources, reads the statistics, calls index_directory on DIRECTORY
and search_code for QUERY, reads the health and the statistics again. Prints one JSON
object; exits non-zero on any protocol error.
"""

import asyncio
import json
import sys

import mcp


def text_of(result) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def drive(session, directory: str, query: str) -> dict:
    tools = sorted(t.name for t in (await session.list_tools()).tools)
    resources = sorted(str(r.uri) for r in (await session.list_resources()).resources)

    async def stats() -> dict:
        r = await session.read_resource("statistics://connection-pool")
        return json.loads(r.contents[0].text)

    before = await stats()
    indexed = await session.call_tool("index_directory", {"path": directory})
    found = await session.call_tool("search_code", {"query": query, "limit": 5})
    health = await session.read_resource("health://connection-pool")
    after = await stats()
    return {
        "tools": tools,
        "resources": resources,
        "indexed": text_of(indexed),
        "indexed_error": bool(getattr(indexed, "is_error", False) or getattr(indexed, "isError", False)),
        "found": text_of(found),
        "health": json.loads(health.contents[0].text),
        "acquisitions_before": before["total_acquisitions"],
        "acquisitions_after": after["total_acquisitions"],
    }


async def main() -> None:
    kind, url, directory, query = sys.argv[1:5]
    if kind == "sse":
        from mcp.client.session import ClientSession
        from mcp.client.sse import sse_client

        async with sse_client(url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                print(json.dumps(await drive(session, directory, query)))
        return
    async with mcp.Client(url, raise_exceptions=True) as client:
        print(json.dumps(await drive(client, directory, query)))


asyncio.run(main())
