"""The ASGI entry point uvicorn imports (`fhir_gateway.api.asgi:app`), configured from env.

Also usable directly (`uvicorn fhir_gateway.api.asgi:app`), so it refuses to start, with
one line on stderr and exit status 2, when auth is on and FHIR_GATEWAY_BASE_URL is not
set (or not an http(s) URL): the token endpoint and the tokens' issuer and audience must
not come from the Host header of each request (`config.Settings.public_base_url`).
`fhir-gateway serve` sets it for its workers.
"""

import sys

from ..config import Settings, base_url_problem
from .app import create_app

settings = Settings.from_env()
_problem = base_url_problem(settings)
if _problem is not None:
    print(f"fhir-gateway: {_problem}", file=sys.stderr, flush=True)
    raise SystemExit(2)
app = create_app(settings, freeze_gc=True)
