"""The OAuth 2.0 authorization server (SMART Backend Services): issue 6, not built yet."""
