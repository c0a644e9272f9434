"""The OAuth 2.0 authorization server (SMART Backend Services) on authlib.

- `registry`: OAuth clients (role, partner, organisation, public JWKS) in the store.
- `keys`: the gateway's signing keys (store-held with rotation, or a key file) and JWKS.
- `assertion`: checking a client's `private_key_jwt` assertion.
- `scopes`: SMART v2 scopes (v1 mapped) and each role's ceiling.
- `server`: the token endpoint (`TokenEndpoint.handle`), issuing RFC 9068 access tokens.
- `client`: the client side (sign an assertion, fetch a token) for the CLI and tests.
"""
