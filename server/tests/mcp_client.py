"""Reads the wirepool MCP resources with the official MCP Python SDK.

Usage: mcp_client.py http URL | mcp_client.py stdio COMMAND [ARG...] | mcp_client.py sse URL
Prints one JSON object: the listed resources and the text of each resource read. With
`sse`, the SDK's HTTP+SSE client (mcp.client.sse) reads through two sessions open at once,
each reported under "sessions". Exits non-zero on any protocol error.
"""

import asyncio
import json
import os
import sys

import mcp


async def read_all(session) -> dict:
    """Lists and reads the resources through a ClientSession."""
    listed = await session.list_resources()
    resources = {
        str(r.uri): {
            "name": r.name,
            "mimeType": getattr(r, "mime_type", None) or getattr(r, "mimeType", None),
            "description": r.description,
        }
        for r in listed.resources
    }
    read = {}
    for uri in ("health://connection-pool", "statistics://connection-pool"):
        result = await session.read_resource(uri)
        content = result.contents[0]
        read[uri] = {
            "mimeType": getattr(content, "mime_type", None) or getattr(content, "mimeType", None),
            "text": content.text,
        }
    try:
        await session.read_resource("health://no-such-thing")
        missing = "no error"
    except Exception as e:  # the SDK's error type for a JSON-RPC error
        missing = str(e)
    return {"resources": resources, "read": read, "missing": missing}


async def sse(url: str) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client

    async def one() -> dict:
        async with sse_client(url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await read_all(session)

    # Two sessions at once: each must get its own answers.
    first, second = await asyncio.gather(one(), one())
    report = dict(first)
    report["sessions"] = [first["read"]["health://connection-pool"]["text"], second["read"]["health://connection-pool"]["text"]]
    print(json.dumps(report))


async def main() -> None:
    kind, target = sys.argv[1], sys.argv[2:]
    if kind == "sse":
        await sse(target[0])
        return
    if kind == "http":
        server = target[0]
    else:
        # As an MCP client's configuration would: the server's settings in its env block.
        env = {
            k: v
            for k, v in os.environ.items()
            if k == "DATABASE_URL" or k.startswith(("POOL_", "LOG_", "PG"))
        }
        server = mcp.StdioServerParameters(command=target[0], args=target[1:], env=env)
    async with mcp.Client(server, raise_exceptions=True) as client:
        print(json.dumps(await read_all(client)))


asyncio.run(main())
