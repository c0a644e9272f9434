Profile: SCRAdvanceDirective
Parent: $UKCore-Consent
Id: SCR-AdvanceDirective
Title: "Shared care record advance directive"
Description: "An advance directive the person has made, such as an advance decision to refuse treatment (ADRT), a DNACPR decision document or a Lasting Power of Attorney: a Consent with scope 'adr', the category saying which kind, and the date it was made."
* ^status = #draft
* scope = $consentscope#adr
* category 1..*
* category from SCRAdvanceDirectiveCategory (extensible)
* patient 1..1
* patient only Reference(SCRPatient)
* dateTime 1..1

Profile: SCRConsentToShare
Parent: $UKCore-Consent
Id: SCR-ConsentToShare
Title: "Shared care record consent to share"
Description: "The person's consent (or its withdrawal) to share their end-of-life record between the partners: a Consent with scope 'patient-privacy' and the date it was recorded."
* ^status = #draft
* scope = $consentscope#patient-privacy
* patient 1..1
* patient only Reference(SCRPatient)
* dateTime 1..1
