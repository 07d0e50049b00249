"""The REST ceiling: a bare ASGI endpoint that only parses the JSON.

``POST /api/v1/data`` reads the body, parses it with orjson and answers
``{"ok": true, "rows": <records>}``; nothing is validated, converted or stored. It runs under
uvicorn with the same defaults as the gateway, in its own process, so the difference to the
gateway is the gateway's work (validation, JSON -> Arrow, the Flight round trip, the WAL).

    python -m bench.baselines.bare_json --ready-file ready.json
"""

from __future__ import annotations

import socket

import click
import orjson

from . import write_ready


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    status, payload = 200, b""
    try:
        body = orjson.loads(b"".join(chunks))
        records = body.get("records") if isinstance(body, dict) else None
        payload = orjson.dumps({"ok": True, "rows": len(records) if isinstance(records, list) else 1})
    except orjson.JSONDecodeError:
        status, payload = 400, b'{"ok":false,"error":"malformed JSON","code":"invalid_request","status":400}'
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


@click.command()
@click.option("--ready-file", required=True)
def main(ready_file: str) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    write_ready(ready_file, {"url": f"http://127.0.0.1:{port}"})
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
