// ValueSets the profiles bind, and the project CodeSystems used only where no published
// code system was found (each says so in its description).

CodeSystem: SCRDeathLocationType
Id: death-location-type
Title: "Death location type (NHS Data Dictionary)"
Description: "The NHS Data Dictionary death location types, used for the preferred and actual place of death: 10 hospital, 21 patient's own home, 22 other private residence, 30 hospice, 40 care home, 50 other. A project code system: neither UK Core STU2 (2.0.0, whose 88 CodeSystems were checked) nor NHS England publishes these codes as a FHIR CodeSystem that the project could find, so the shared record defines one here with the Data Dictionary's codes and meanings, to be replaced by a published one when there is."
* ^url = "https://fhir.shared-care-record.example/CodeSystem/death-location-type"
* ^status = #draft
* ^caseSensitive = true
* ^content = #complete
* #10 "Hospital"
* #21 "Patient's own home"
* #22 "Other private residence (e.g. relative's home, carer's home)"
* #30 "Hospice"
* #40 "Care home"
* #50 "Other"

CodeSystem: SCRObservationType
Id: end-of-life-observation
Title: "End-of-life record observations without a verified SNOMED CT code"
Description: "What an Observation records where the project found no published code for it: the person's preferred place of care, preferred place of death, and actual place of death. A project code system: no SNOMED CT observable entity for these was confirmed in the sources the project checked (SCCI1580, UK Core STU2, the FHIR R4 terminology), so the project defines these codes; SNOMED CT codings may be sent beside them."
* ^url = "https://fhir.shared-care-record.example/CodeSystem/end-of-life-observation"
* ^status = #draft
* ^caseSensitive = true
* ^content = #complete
* #preferred-place-of-care "Preferred place of care"
* #preferred-place-of-death "Preferred place of death"
* #place-of-death "Place of death"

CodeSystem: SCRDetectedIssueTypeCodes
Id: detected-issue-type
Title: "Shared care record detected issue types"
Description: "Kinds of issue the gateway detects. A project code system: the FHIR R4 terminology (v3 ActCode detected issue codes) has no code for two care organisations holding different values of the same fact, so the project defines it."
* ^url = "https://fhir.shared-care-record.example/CodeSystem/detected-issue-type"
* ^status = #draft
* ^caseSensitive = true
* ^content = #complete
* #partner-conflict "Partners disagree" "Two partner organisations hold different, current values of the same safety fact (for example the CPR decision) for the person."

ValueSet: SCRCPRDecisionValue
Id: SCR-CPRDecisionValue
Title: "CPR decision"
Description: "The two CPR decisions: not for attempted CPR, for attempted CPR (SNOMED CT)."
* ^status = #draft
* $sct#450476008 "Not for attempted cardiopulmonary resuscitation"
* $sct#450475007 "For attempted cardiopulmonary resuscitation"

ValueSet: SCRPreferredPlaceType
Id: SCR-PreferredPlaceType
Title: "Preferred place (of care or of death)"
Description: "Whether the preference is for the place of care or the place of death."
* ^status = #draft
* SCRObservationType#preferred-place-of-care "Preferred place of care"
* SCRObservationType#preferred-place-of-death "Preferred place of death"

ValueSet: SCRPreferredPlaceValue
Id: SCR-PreferredPlaceValue
Title: "Preferred place value"
Description: "A death location type (NHS Data Dictionary), or the SNOMED CT finding that no preference was recorded: declined discussion, discussion not appropriate, undecided, unable to express."
* ^status = #draft
* include codes from system SCRDeathLocationType
* $sct#766391000000108 "Preferred place of death: declined discussion"
* $sct#517131000000106 "Preferred place of death: discussion not appropriate"
* $sct#517161000000101 "Preferred place of death: undecided"
* $sct#517111000000103 "Preferred place of death: unable to express"

ValueSet: SCRDeathLocationTypes
Id: SCR-DeathLocationType
Title: "Death location types"
Description: "The NHS Data Dictionary death location types (hospital, own home, other private residence, hospice, care home, other)."
* ^status = #draft
* include codes from system SCRDeathLocationType

ValueSet: SCREndOfLifeStatusCode
Id: SCR-EndOfLifeStatusCode
Title: "End-of-life status"
Description: "SNOMED CT findings the shared record holds as end-of-life status: ADRT, Lasting Power of Attorney, palliative care and end of life care registers, last weeks and last days of life, and the recorded reasons there is no preferred place of death (declined discussion, discussion not appropriate, undecided, unable to express), which GP systems record as findings of their own."
* ^status = #draft
* $sct#816301000000100 "Has advance decision to refuse treatment (Mental Capacity Act 2005)"
* $sct#816321000000109 "Has advance decision to refuse life-sustaining treatment (Mental Capacity Act 2005)"
* $sct#816361000000101 "Has personal welfare Lasting Power of Attorney"
* $sct#816381000000105 "Has personal welfare Lasting Power of Attorney with authority for life-sustaining treatment decisions"
* $sct#414937009 "On gold standards palliative care framework"
* $sct#526631000000108 "On end of life care register"
* $sct#955231000000109 "Last weeks of life"
* $sct#511401000000102 "Last days of life"
* $sct#766391000000108 "Preferred place of death: declined discussion"
* $sct#517131000000106 "Preferred place of death: discussion not appropriate"
* $sct#517161000000101 "Preferred place of death: undecided"
* $sct#517111000000103 "Preferred place of death: unable to express"

ValueSet: SCRCarePlanCategory
Id: SCR-CarePlanCategory
Title: "Care plan category"
Description: "Kinds of plan the shared record holds (SNOMED CT): end of life care plan, advance care plan, treatment escalation plan, ReSPECT form. Extensible: partners' other plan kinds (e.g. each council service) use their own codes."
* ^status = #draft
* $sct#736373009 "End of life care plan"
* $sct#736366004 "Advance care plan"
* $sct#735324008 "Treatment escalation plan"
* $sct#1382601000000107 "ReSPECT form"

ValueSet: SCRAdvanceDirectiveCategory
Id: SCR-AdvanceDirectiveCategory
Title: "Advance directive category"
Description: "Kinds of advance directive: do not resuscitate and advance directive (FHIR consent category codes), and the SNOMED CT ADRT and Lasting Power of Attorney findings."
* ^status = #draft
* $consentcategory#dnr "Do Not Resuscitate"
* $consentcategory#acd "Advance Directive"
* $sct#816301000000100 "Has advance decision to refuse treatment (Mental Capacity Act 2005)"
* $sct#816321000000109 "Has advance decision to refuse life-sustaining treatment (Mental Capacity Act 2005)"
* $sct#816361000000101 "Has personal welfare Lasting Power of Attorney"
* $sct#816381000000105 "Has personal welfare Lasting Power of Attorney with authority for life-sustaining treatment decisions"

ValueSet: SCRNHSNumberVerificationStatus
Id: SCR-NHSNumberVerificationStatus
Title: "NHS number verification status"
Description: "The NHS number verification statuses the shared record accepts: those of UK Core's UKCore-NHSNumberVerificationStatus (England and Wales code systems, and NoInformation), restated here so the gateway's required binding does not depend on a copy of UK Core at run time."
* ^status = #draft
* $nhs-verification-england#01 "Number present and verified"
* $nhs-verification-england#02 "Number present but not traced"
* $nhs-verification-england#03 "Trace required"
* $nhs-verification-england#04 "Trace attempted - No match or multiple match found"
* $nhs-verification-england#05 "Trace needs to be resolved - (NHS number or patient detail conflict)"
* $nhs-verification-england#06 "Trace in progress"
* $nhs-verification-england#07 "Number not present and trace not required"
* $nhs-verification-england#08 "Trace postponed (baby under six weeks old)"
* $nhs-verification-wales#nn "Number present and traced using Welsh NHS AR"
* $nhs-verification-wales#01 "Number present & traced"
* $nhs-verification-wales#02 "Number present but not traced"
* $nhs-verification-wales#03 "Trace required"
* $nhs-verification-wales#04 "Trace attempted – no match or multiple match found"
* $nhs-verification-wales#05 "Trace needs to be resolved (NHS number or patient detail conflict)"
* $nhs-verification-wales#06 "Trace in progress"
* $nhs-verification-wales#07 "Number not present and trace not required"
* $nhs-verification-wales#08 "Trace postponed (baby under six weeks old)"
* $v3-NullFlavor#NI "NoInformation"

ValueSet: SCRDetectedIssueType
Id: SCR-DetectedIssueType
Title: "Detected issue type"
Description: "Kinds of issue the gateway raises."
* ^status = #draft
* include codes from system SCRDetectedIssueTypeCodes
