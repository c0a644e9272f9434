Profile: SCRProvenance
Parent: $UKCore-Provenance
Id: SCR-Provenance
Title: "Shared care record provenance"
Description: "Where a fact came from: the partner organisation (by ODS code), the source record it was made from, and when the gateway received it (recorded)."
* ^status = #draft
* obeys scr-prov-1 and scr-prov-2
* recorded ^short = "When the gateway received the record"

Profile: SCRAuditEvent
Parent: $UKCore-AuditEvent
Id: SCR-AuditEvent
Title: "Shared care record audit event"
Description: "Who looked at or changed the shared record: each agent identified, one of them the requestor."
* ^status = #draft
* obeys scr-audit-2
* agent obeys scr-audit-1

Profile: SCRDetectedIssue
Parent: DetectedIssue
Id: SCR-DetectedIssue
Title: "Shared care record detected issue (partners disagree)"
Description: "Two partners hold different values of a safety fact (such as the CPR decision): the issue names the person, implicates both records, and says in words what differs, so it is shown, never hidden."
* ^status = #draft
* obeys scr-di-1
* code 1..1
* code from SCRDetectedIssueType (required)
* severity 1..1
* patient 1..1
* patient only Reference(SCRPatient)
* implicated 2..*
* detail 1..1
