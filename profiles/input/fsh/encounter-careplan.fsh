Profile: SCREncounter
Parent: $UKCore-Encounter
Id: SCR-Encounter
Title: "Shared care record Encounter"
Description: "A stay, visit or attendance: one Encounter per source visit (an ADT visit number, a hospice admission id, a community visit), identified by the partner's own identifier for it."
* ^status = #draft
* identifier 1..*
* identifier ^short = "The partner's identifier for the visit (e.g. ADT visit number)"
* identifier obeys scr-id-1
* subject 1..1
* subject only Reference(SCRPatient)

Profile: SCRCarePlan
Parent: $UKCore-CarePlan
Id: SCR-CarePlan
Title: "Shared care record CarePlan"
Description: "A plan of care: the GP's palliative care plan, a community plan, each council service, the ReSPECT recommendations. The category, where the partner records one, says which kind of plan it is (not required: council services and community plans arrive without one)."
* ^status = #draft
* subject only Reference(SCRPatient)
* category from SCRCarePlanCategory (extensible)
* identifier obeys scr-id-1
