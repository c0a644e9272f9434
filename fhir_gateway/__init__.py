"""A FHIR R4 gateway that holds one shared end-of-life care record for a partnership.

Data flows one way: partner file -> reader -> mapping -> identity -> validation -> store
-> FHIR API -> access control and audit -> caller. Each stage is a subpackage.
"""

__version__ = "0.1.0"
