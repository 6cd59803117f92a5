"""Reads the wirepool MCP resources with the official MCP Python SDK.

Usage: mcp_client.py http URL | mcp_client.py stdio COMMAND [ARG...]
Prints one JSON object: the listed resources and the text of each resource read.
Exits non-zero on any protocol error.
"""

import asyncio
import json
import os
import sys

import mcp


async def main() -> None:
    kind, target = sys.argv[1], sys.argv[2:]
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
        listed = await client.list_resources()
        resources = {
            str(r.uri): {
                "name": r.name,
                "mimeType": r.mime_type if hasattr(r, "mime_type") else r.mimeType,
                "description": r.description,
            }
            for r in listed.resources
        }
        read = {}
        for uri in ("health://connection-pool", "statistics://connection-pool"):
            result = await client.read_resource(uri)
            content = result.contents[0]
            read[uri] = {
                "mimeType": getattr(content, "mime_type", None) or getattr(content, "mimeType", None),
                "text": content.text,
            }
        try:
            await client.read_resource("health://no-such-thing")
            missing = "no error"
        except Exception as e:  # the SDK's error type for a JSON-RPC error
            missing = str(e)
        print(json.dumps({"resources": resources, "read": read, "missing": missing}))


asyncio.run(main())
