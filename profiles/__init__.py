"""The shared record's FHIR profiles, shipped as package data (see README.md).

``generated/`` holds the StructureDefinitions, ValueSets and CodeSystems built by
``make profiles`` from ``input/fsh/``; ``fhir_gateway.validation`` loads them.
"""
