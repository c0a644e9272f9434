Profile: SCRPatient
Parent: $UKCore-Patient
Id: SCR-Patient
Title: "Shared care record Patient"
Description: "The person. One Patient per person, carrying the NHS number (when known) and every partner's local identifier, each with its system. The NHS number must pass the Modulus 11 check."
* ^status = #draft
* identifier 1..*
* identifier ^short = "NHS number and every partner's local identifier"
* identifier obeys scr-id-1
// Restated from UK Core, which the shared record relies on: identifiers are sliced by
// system, and the NHS number slice has the NHS number system and a value.
* identifier ^slicing.discriminator[0].type = #value
* identifier ^slicing.discriminator[0].path = "system"
* identifier ^slicing.rules = #open
* identifier[nhsNumber] 0..1
* identifier[nhsNumber].system 1..1
* identifier[nhsNumber].system = $nhs-number (exactly)
* identifier[nhsNumber].value 1..1
* identifier[nhsNumber].value obeys scr-nhs-1
* identifier[nhsNumber].extension[nhsNumberVerificationStatus].value[x] from SCRNHSNumberVerificationStatus (required)
