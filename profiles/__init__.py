"""The shared record FHIR profiles, shipped as package data: issue 4, not written yet."""
