"""Data extracted from the FHIR R4 specification (see scripts/extract_spec_data.py)."""
