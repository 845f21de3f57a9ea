"""A stand-in for an OPA server, faithful to OPA's documented Data API.

No OPA binary is available on this machine, so the tests run the OPA engine against
this server. It implements what the engine uses, as OPA documents it
(https://www.openpolicyagent.org/docs/rest-api#data-api):

- ``POST /v1/data/{path}`` with a JSON body ``{"input": …}``: 200 with
  ``{"result": <value>}``, or 200 with ``{}`` when the document is undefined;
  ``?provenance=true`` adds ``{"provenance": {"version": …, "bundles": {name:
  {"revision": …}}}}``; a ``decision_id`` is always returned (decision logging on);
- a body that is not JSON, or whose ``input`` key is not... anything JSON: 400 with
  ``{"code": "invalid_parameter", "message": …}``;
- ``GET /health``: 200 ``{}``.

Policies are evaluated for real, with regopy (rego-cpp), from the same Rego files
that an OPA server would load as a bundle. Knobs let a test make it hang, fail with
500, or answer garbage.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from typing import Any

import regopy
from aiohttp import web

__all__ = ["OpaStandIn"]


class OpaStandIn:
    def __init__(self, modules: Mapping[str, str], data: str = "{}", revision: str = "r1") -> None:
        self._rego = regopy.Interpreter()
        for name, source in modules.items():
            self._rego.add_module(name, source)
        self._rego.add_data_json(data)
        self.revision = revision
        self.mode = "ok"  # ok | hang | error500 | garbage
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/data/{path:.*}", self._data)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        self.release.set()
        if runner is not None:
            await runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _data(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            return web.json_response(
                {"code": "invalid_parameter", "message": f"body contains malformed input: {exc}"},
                status=400,
            )
        if not isinstance(body, dict):
            return web.json_response(
                {"code": "invalid_parameter", "message": "body must be an object"}, status=400
            )
        self.requests.append(body)
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "error500":
            return web.json_response({"code": "internal_error", "message": "boom"}, status=500)
        if self.mode == "garbage":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        query = "data." + ".".join(p for p in request.match_info["path"].split("/") if p)
        self._rego.set_input(regopy.Input(body.get("input")))
        output = self._rego.query(query)
        answer: dict[str, Any] = {"decision_id": f"standin-{next(self._ids)}"}
        if output.ok() and str(output) != "undefined":
            expressions = json.loads(str(output)).get("expressions") or []
            if expressions:
                answer["result"] = expressions[0]
        if request.query.get("provenance") == "true":
            answer["provenance"] = {
                "version": "standin",
                "bundles": {"authz": {"revision": self.revision}},
            }
        return web.json_response(answer)
