// FHIRPath invariants the profiles rely on. Each is checked by the gateway's validator
// (fhir_gateway/validation); the key is what an OperationOutcome issue names.

Invariant: scr-nhs-1
Description: "An NHS number is 10 digits whose last digit is the Modulus 11 check digit of the first nine (weights 10 to 2; a check value of 11 is 0, and 10 means no valid number)."
Severity: #error
Expression: "$this.matches('^[0-9]{10}$') and ((11 - (($this.substring(0,1).toInteger() * 10 + $this.substring(1,1).toInteger() * 9 + $this.substring(2,1).toInteger() * 8 + $this.substring(3,1).toInteger() * 7 + $this.substring(4,1).toInteger() * 6 + $this.substring(5,1).toInteger() * 5 + $this.substring(6,1).toInteger() * 4 + $this.substring(7,1).toInteger() * 3 + $this.substring(8,1).toInteger() * 2) mod 11)) mod 11) = $this.substring(9,1).toInteger()"

Invariant: scr-id-1
Description: "An identifier names both its system (whose number it is: the NHS, or which partner) and its value."
Severity: #error
Expression: "system.exists() and value.exists()"

Invariant: scr-rp-1
Description: "A related person has a name or a way to contact them."
Severity: #error
Expression: "name.exists() or telecom.exists()"

Invariant: scr-prov-1
Description: "Provenance names the partner organisation the data came from by its ODS code (agent.who.identifier with system https://fhir.nhs.uk/Id/ods-organization-code)."
Severity: #error
Expression: "agent.where(who.identifier.system = 'https://fhir.nhs.uk/Id/ods-organization-code' and who.identifier.value.exists()).exists()"

Invariant: scr-prov-2
Description: "Provenance names the source record it was made from (an entity with role 'source')."
Severity: #error
Expression: "entity.where(role = 'source').exists()"

Invariant: scr-audit-1
Description: "Each agent of an audit event is identified, by a reference or identifier (who) or by name."
Severity: #error
Expression: "who.exists() or name.exists()"

Invariant: scr-audit-2
Description: "An audit event says who asked: one agent is the requestor."
Severity: #error
Expression: "agent.where(requestor = true).exists()"

Invariant: scr-di-1
Description: "A detected issue implicates at least two different records (the partners' disagreeing facts)."
Severity: #error
Expression: "implicated.select(reference | identifier.value).isDistinct()"

Invariant: scr-cpr-1
Description: "A CPR decision records one decision: for attempted CPR or not, never both (a crew would otherwise be told whichever coding comes first)."
Severity: #error
Expression: "value.ofType(CodeableConcept).coding.where(system = 'http://snomed.info/sct' and (code = '450475007' or code = '450476008')).code.distinct().count() <= 1"

Invariant: scr-subj-1
Description: "The fact is about a stored Patient, referred to by its id or URL: not a contained Patient, a local '#' reference or an identifier alone, which leave it outside the person's record (the emergency summary would not find it)."
Severity: #error
Expression: "subject.reference.exists() and subject.reference.startsWith('#').not()"
