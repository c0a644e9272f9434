"""Security: who may see what, and the record of who did.

    Security(repository, settings)     the composition root the app builds at start-up
     ├── access.AccessInterceptor      bearer token, role and scopes, ownership, consent,
     │                                 break-glass; `can_see` for every resource shown
     ├── audit.AuditInterceptor        an AuditEvent for every interaction
     ├── audit.chain.AuditTrail        per-writer hash chains, group commit, anchors
     │   └── audit.journal             journal first: durable in a local file before the
     │                                 answer, stored in the background (default on SQLite)
     ├── gate.SecureGate               runs each HTTP request: writes and their audit in
     │                                 one transaction, every other event durable before
     │                                 the answer
     └── http                          token endpoint, JWKS, smart-configuration, reports

The authorization server itself (clients, keys, tokens) is `fhir_gateway.auth`.
"""

from __future__ import annotations

from typing import Any

from ..auth.keys import KeyRing
from ..auth.server import Endpoints, TokenEndpoint
from ..fhir.interceptors import Interceptor
from ..fhir.repository import Repository
from ..fhir.router import FhirRouter
from .access import AccessInterceptor
from .audit.chain import AuditTrail
from .audit.interceptor import AuditInterceptor
from .audit.journal import JournalledAuditTrail, journal_directory
from .consent import ConsentPolicy
from .gate import SecureGate
from .tokens import AccessTokenVerifier


class Security:
    def __init__(self, repository: Repository, settings: Any) -> None:
        self.repository = repository
        self.settings = settings
        self.keyring = KeyRing(repository.engine, key_file=settings.signing_keys_file,
                               rotation_s=settings.signing_key_rotation_s)
        self.token_endpoint = TokenEndpoint(repository.engine, self.keyring,
                                            lifetime_s=settings.token_lifetime_s)
        self.access: AccessInterceptor | None = None
        if settings.auth_enabled:
            self.access = AccessInterceptor(
                repository, verifier=AccessTokenVerifier(self.keyring),
                issuer_for=lambda base: Endpoints.for_base(base).issuer)
        self.trail: AuditTrail | None = None
        self.audit: AuditInterceptor | None = None
        if settings.auditing:
            self.trail = open_trail(repository, settings)
            consent = self.access.consent if self.access else ConsentPolicy(repository)
            self.audit = AuditInterceptor(self.trail, patients_of=consent.patients_of)

    def interceptors(self) -> list[Interceptor]:
        return [i for i in (self.access, self.audit) if i is not None]

    def gate(self, router: FhirRouter) -> SecureGate:
        return SecureGate(router, self.trail, self.audit,
                          identify=self.access.authenticate if self.access else None)

    def close(self) -> None:
        if self.trail is not None:
            self.trail.close()


def open_trail(repository: Repository, settings: Any) -> AuditTrail:
    """The journalled trail where there is a journal directory (configured, or beside a
    SQLite file), else the group-commit writer straight into the store."""
    directory = journal_directory(settings.audit_journal, repository.engine)
    if directory is None:
        return AuditTrail(repository, anchor_interval_s=settings.audit_anchor_interval_s)
    return JournalledAuditTrail(repository, directory,
                                anchor_interval_s=settings.audit_anchor_interval_s)


__all__ = ["Security", "open_trail"]
