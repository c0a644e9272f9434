"""The ASGI entry point uvicorn imports (`fhir_gateway.api.asgi:app`), configured from env."""

from .app import create_app

app = create_app(freeze_gc=True)
