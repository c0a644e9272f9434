"""The audit trail: an AuditEvent for every interaction, hash-chained per writer.

- `events`: AuditEvents shaped like IHE Basic Audit Log Patterns (BALP).
- `chain`: sealing (hash over content and the previous hash), the group-commit writer and
  the in-transaction slots, chain heads and anchors in the store.
- `journal`: journal first: durable in a local file before the answer, stored by a
  background importer; a dead process's journal stored at the next start.
- `verify`: `fhir-gateway audit verify`.
- `interceptor`: the hook that audits every interaction, allowed or refused.
- `reports`: the auditors' reports.
"""
