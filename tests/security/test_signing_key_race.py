"""Two instances making the period's signing key at once. On MongoDB with transactions,
the loser's create-only insert aborts its whole transaction (a VersionConflict), not a
quiet False: the loser must then read the winner's key in a fresh session, not fail the
token request. (mongomock has no transactions: the abort is simulated here.)"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from joserfc import jwk

from fhir_gateway.auth.keys import KIND, KeyRing
from fhir_gateway.store import open_store
from fhir_gateway.store.base import VersionConflict
from fhir_gateway.store.mongo import MongoSession


def test_the_instance_losing_the_race_signs_with_the_winners_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = open_store(f"mongomock://test/db{uuid.uuid4().hex[:8]}")
    ring = KeyRing(engine, clock=lambda: 1000.0)
    kid = f"gw-{ring._period()}"
    winners = jwk.ECKey.generate_key("P-384", private=True)
    real = MongoSession.record_put
    raced: list[bool] = []

    def winner_commits_first(self: MongoSession, kind: str, key: str, value: dict,
                             **kw: Any) -> bool:
        if kind == KIND and key == kid and not raced:
            raced.append(True)
            with engine.session(write=True) as other:  # the other instance, committed
                real(other, KIND, kid, {"jwk": winners.as_dict(private=True),
                                        "created": 1000.0}, create_only=True)
            raise VersionConflict("the insert hit the unique key: transaction aborted")
        return real(self, kind, key, value, **kw)

    monkeypatch.setattr(MongoSession, "record_put", winner_commits_first)
    signing = ring.signing_key()
    assert raced
    assert signing.kid == kid
    assert signing.key.thumbprint() == winners.thumbprint()
    assert [k["kid"] for k in ring.jwks()["keys"]] == [kid]


def test_a_jti_replayed_while_the_first_use_commits_is_refused_not_a_500(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Two token requests with one assertion at once: the loser's create-only insert of
    # the jti aborts its transaction (VersionConflict on MongoDB); that is a replay.
    from fhir_gateway.auth.assertion import JTI_KIND, AssertionRefused, _remember_jti

    engine = open_store(f"mongomock://test/db{uuid.uuid4().hex[:8]}")
    real = MongoSession.record_put

    def first_use_commits_first(self: MongoSession, kind: str, key: str, value: dict,
                                **kw: Any) -> bool:
        if kind == JTI_KIND:
            raise VersionConflict("the insert hit the unique key: transaction aborted")
        return real(self, kind, key, value, **kw)

    monkeypatch.setattr(MongoSession, "record_put", first_use_commits_first)
    claims = {"jti": "j1", "exp": 1300.0}
    with pytest.raises(AssertionRefused, match="jti was used before"):
        _remember_jti(engine, "client-a", claims, 1000.0)
