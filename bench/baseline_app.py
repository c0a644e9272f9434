"""The baseline for `bench/crud.py`: a bare FastAPI app with no store and no FHIR logic.

`POST /echo` parses the JSON body and returns it with 201; `GET /item/{item_id}` returns a
small JSON document. `crud.py` serves it under uvicorn with the same settings as the gateway
(one worker, log level `warning`, no access log), so the pair measures what the gateway adds
on top of FastAPI + uvicorn + the HTTP client on this machine at this moment.

Run by hand: `python -m uvicorn baseline_app:app --app-dir bench --port 8001`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

app = FastAPI(title="crud bench baseline", docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/echo")
async def echo(request: Request) -> JSONResponse:
    body: Any = json.loads(await request.body())
    return JSONResponse(body, status_code=201)


@app.get("/item/{item_id}")
async def item(item_id: str) -> JSONResponse:
    return JSONResponse({"resourceType": "Patient", "id": item_id, "active": True})
