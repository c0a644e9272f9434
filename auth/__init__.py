"""The OAuth 2.0 authorization server (SMART Backend Services) lives here: issue 6, not built yet."""
