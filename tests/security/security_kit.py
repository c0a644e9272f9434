"""Helpers for security tests: the app with auth on, clients with keys, real tokens.

The `gw` fixture (tests/conftest.py) is a `Gateway`: a TestClient on the secured app
(SQLite and mongomock), a way to register clients and get tokens through the real token
endpoint, and direct access to the repository to arrange data as ingest would (with
Provenance naming the partner). A plain module, not a conftest, so it never shadows
tests/conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from joserfc import jwk

from fhir_gateway.api.app import create_app
from fhir_gateway.auth.assertion import ASSERTION_TYPE
from fhir_gateway.auth.client import make_assertion
from fhir_gateway.auth.registry import ClientRegistry
from fhir_gateway.config import Settings
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.store.base import StoreEngine

BASE = "http://gateway.test"
FHIR = f"{BASE}/fhir"
TOKEN_URL = f"{BASE}/auth/token"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


@dataclass
class Registered:
    client_id: str
    key: Any
    kid: str
    alg: str

    def assertion(self, **overrides: Any) -> str:
        return make_assertion(self.client_id, TOKEN_URL, self.key, self.kid, self.alg,
                              **overrides)


class Gateway:
    def __init__(self, http: TestClient, engine: StoreEngine) -> None:
        self.http = http
        self.engine = engine
        self.repository: Repository = http.app.state.fhir_router.repository
        self.registry = ClientRegistry(engine)

    def register(self, client_id: str, role: str, *, org: str | None = None,
                 partner: str | None = None, alg: str = "ES384") -> Registered:
        key = jwk.RSAKey.generate_key(2048, private=True) if alg == "RS384" else \
            jwk.ECKey.generate_key("P-384", private=True)
        kid = f"{client_id}-key"
        public = {**key.as_dict(private=False), "kid": kid}
        self.registry.add(client_id, role=role, jwks={"keys": [public]}, partner=partner,
                          organization=org)
        return Registered(client_id, key, kid, alg)

    def token_response(self, assertion: str, scope: str = "system/*.rs",
                       **form: str) -> Any:
        data = {"grant_type": "client_credentials", "scope": scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion, **form}
        return self.http.post("/auth/token", data=data)

    def token(self, client: Registered, scope: str = "system/*.rs") -> str:
        resp = self.token_response(client.assertion(), scope)
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]

    def login(self, client_id: str, role: str, *, scope: str = "system/*.rs",
              **kwargs: Any) -> dict[str, str]:
        """Register a client and return request headers carrying its token."""
        client = self.register(client_id, role, **kwargs)
        return {"Authorization": f"Bearer {self.token(client, scope)}"}

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Store a resource directly (as ingest does), keeping its id."""
        result = self.repository.update(resource, rtype=resource["resourceType"],
                                        rid=resource["id"])
        return json.loads(result.stored.body)

    def verify(self) -> Any:
        """`audit verify` on this gateway's store, after what it journalled is stored."""
        from fhir_gateway.security.audit.verify import verify

        self.http.app.state.security.trail.catch_up()
        return verify(self.repository)

    def audit_events(self, **criteria: str) -> list[dict[str, Any]]:
        from fhir_gateway.search.query import parse_search

        self.http.app.state.security.trail.catch_up()  # as the gate does before a search
        search = parse_search("AuditEvent", list(criteria.items()), self.repository.registry)
        search.query.limit = 10_000
        return [json.loads(r.body) for r in self.repository.find(search.query).rows]


@contextmanager
def secured(engine: StoreEngine, **settings: Any) -> Iterator[Gateway]:
    app = create_app(Settings(**{"max_body_bytes": 1024 * 1024, "auth_enabled": True,
                                 **settings}), engine=engine)
    with TestClient(app, base_url=BASE) as http:
        yield Gateway(http, engine)


def provenance(target: str, ods: str, pid: str) -> dict[str, Any]:
    return {"resourceType": "Provenance", "id": f"prov-{target.replace('/', '-')}",
            "target": [{"reference": target}, {"reference": f"Patient/{pid}"}],
            "recorded": "2026-01-01T00:00:00Z",
            "agent": [{"who": {"identifier": {"system": ODS, "value": ods}}}]}


def gp(gw: Gateway) -> dict[str, str]:
    """Headers of a GP practice's clinician (B86001), an organisation holding nothing."""
    return gw.login("gp-ward", "clinician", org="B86001")


def patient(pid: str, nhs: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}],
            "identifier": [{"system": NHS, "value": nhs}]}


def deny_consent(pid: str, ods: str) -> dict[str, Any]:
    return {"resourceType": "Consent", "id": f"consent-{pid}", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{pid}"}, "dateTime": "2026-01-02",
            "organization": [{"identifier": {"system": ODS, "value": ods}}],
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                       "code": "OPTOUT"}]},
            "provision": {"type": "deny"}}


# The consent-hidden record most access tests use: Patient `hid` (a deny consent, held by
# the hospice RH1 through the Provenance ingest wrote) with an ADRT Observation, and
# Patient `vis` with no consent.
FHIR_JSON = {"Content-Type": "application/fhir+json"}
SECRET_CODE = "816301000000100"  # has ADRT
HIDDEN_NHS = "9434765919"
VISIBLE_NHS = "9990000018"


def obs(oid: str, pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": SECRET_CODE}]},
            "subject": {"reference": f"Patient/{pid}"}, **extra}


def seed_hidden_record(gw: Gateway, **hidden_obs: Any) -> None:
    gw.put(patient("hid", HIDDEN_NHS, "Secretname"))
    gw.put(obs("o-hid", "hid", **hidden_obs))
    gw.put(provenance("Observation/o-hid", "RH1", "hid"))
    gw.put(deny_consent("hid", "RH1"))
    gw.put(patient("vis", VISIBLE_NHS, "Openname"))
