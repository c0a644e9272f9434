Profile: SCRCPRDecision
Parent: $UKCore-Observation
Id: SCR-CPRDecision
Title: "Shared care record CPR decision"
Description: "A cardiopulmonary resuscitation decision: resuscitation status (SNOMED CT 304251008) with the value 'not for attempted CPR' (450476008) or 'for attempted CPR' (450475007), and the date the decision was made."
* ^status = #draft
* code = $sct#304251008
* code ^short = "Resuscitation status (SNOMED CT 304251008)"
* subject 1..1
* subject only Reference(SCRPatient)
* obeys scr-cpr-1 and scr-subj-1
* effective[x] 0..1
* effective[x] only dateTime
* effective[x] ^short = "The date the decision was made (an undated decision is kept: shown as undated, never superseded by a dated one, rather than hidden from a crew)"
* value[x] 1..1
* value[x] only CodeableConcept
* value[x] from SCRCPRDecisionValue (required)
* dataAbsentReason 0..0
* extension contains SCRReviewDate named reviewDate 0..1
* extension[reviewDate] ^short = "When the decision is to be reviewed (expired after it)"

Profile: SCRPreferredPlace
Parent: $UKCore-Observation
Id: SCR-PreferredPlace
Title: "Shared care record preferred place of care or death"
Description: "Where the person would prefer to be cared for, or to die: the code says which, the value is an NHS Data Dictionary death location type (hospital, own home, other private residence, hospice, care home, other) or a recorded reason there is none (declined discussion, not appropriate, undecided, unable to express)."
* ^status = #draft
* code from SCRPreferredPlaceType (required)
* subject 1..1
* subject only Reference(SCRPatient)
* obeys scr-subj-1
* value[x] 1..1
* value[x] only CodeableConcept
* value[x] from SCRPreferredPlaceValue (required)
* dataAbsentReason 0..0

Profile: SCRPlaceOfDeath
Parent: $UKCore-Observation
Id: SCR-PlaceOfDeath
Title: "Shared care record actual place of death"
Description: "Where the person died, as an NHS Data Dictionary death location type, so that it can be compared with their preferred place of death."
* ^status = #draft
* code = SCRObservationType#place-of-death
* code ^short = "Place of death (project code)"
* subject 1..1
* subject only Reference(SCRPatient)
* obeys scr-subj-1
* effective[x] ^short = "The date of death, when known"
* value[x] 1..1
* value[x] only CodeableConcept
* value[x] from SCRDeathLocationTypes (required)
* dataAbsentReason 0..0

Profile: SCREndOfLifeStatus
Parent: $UKCore-Observation
Id: SCR-EndOfLifeStatus
Title: "Shared care record end-of-life status"
Description: "A recorded end-of-life status of the person, as the SNOMED CT finding in code: has an advance decision to refuse treatment (ADRT), has a Lasting Power of Attorney for personal welfare (LPA), is on the palliative care (Gold Standards Framework) or end of life care register, is in the last weeks or days of life, or no preferred place of death could be recorded (and why)."
* ^status = #draft
* code from SCREndOfLifeStatusCode (required)
* subject 1..1
* subject only Reference(SCRPatient)
* obeys scr-subj-1
* effective[x] ^short = "When it was recorded or took effect (e.g. the date added to the register)"

Extension: SCRReviewDate
Id: review-date
Title: "Review date"
Description: "When the decision is to be reviewed. Past this date (Europe/London) the emergency summary shows the decision as expired, never as current, and its partner has no current decision until a new one is recorded."
Context: Observation
* ^status = #draft
* value[x] only date or dateTime
* value[x] 1..1
